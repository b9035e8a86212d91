"""`s2s`: the command line, a thin wrapper over the flows.

Prefect runs embedded: with no PREFECT_API_URL set, each command starts a temporary
local API for its own run, so nothing needs to be set up first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flows.api_server import LocalApiServer, flow_api
from flows.cli_common import (
    TRANSCRIPTION_KIND,
    add_option,
    check_inputs,
    check_out_dir,
    configure_env,
    emit,
    exit_code,
    options_from_args,
    parse_size,
    print_stages,
    refuse,
    run_command,
)
from flows.cli_review import register as register_review
from flows.cli_tts import register as register_tts
from tasks.asr.sources import DEFAULT_STALL_S


def _print_ingest_summary(summary: dict) -> None:
    print(f"run folder    {summary['run_dir']}")
    print(
        f"files         {summary['n_files']} ({summary['n_ok']} ok, "
        f"{summary['n_failed']} failed)"
    )
    print(
        f"audio         {summary['audio_hours'] * 3600:.1f} s "
        f"({summary['audio_hours']:.3f} h)"
    )
    print_stages(summary["stages"], width=12)
    for failure in summary["failures"]:
        print(f"  failed  {failure['utt_id']}: {failure['error']}")
    if summary["n_failed"] > len(summary["failures"]):
        print(
            f"  ... and {summary['n_failed'] - len(summary['failures'])} more failures"
        )


def _precheck(args: argparse.Namespace) -> str | None:
    """Why an ingest/transcribe command cannot start, or None (before Prefect)."""
    return check_inputs(args.inputs) or check_out_dir(args.out, TRANSCRIPTION_KIND)


def cmd_ingest(args: argparse.Namespace) -> int:
    if problem := _precheck(args):
        return refuse(args.command, problem)
    from flows.ingest_corpus import ingest_corpus
    from tasks.asr.features import FeatureOptions
    from tasks.asr.sources import ReadLimits

    with flow_api(args.api_server):
        summary = ingest_corpus(
            inputs=args.inputs,
            run_dir=args.out,
            features=options_from_args(args, "features", FeatureOptions()),
            limits=options_from_args(args, "limits", ReadLimits()),
            shard_size=args.shard_size,
            retry_failed=args.retry_failed,
        )
    emit(summary, args.json, _print_ingest_summary)
    return exit_code(summary)


def _print_transcribe_summary(summary: dict) -> None:
    from tasks.asr.transcripts import TRANSCRIPTS

    _print_ingest_summary(summary)
    ev, info = summary["evaluation"], summary["run_info"]
    asr_s = info["stage_seconds"].get(TRANSCRIPTS.name) or 0.0
    audio_s = summary["audio_hours"] * 3600
    stage = summary["stages"][TRANSCRIPTS.name]
    if stage["n_todo"] and asr_s > 0:
        print(
            f"ASR speed     RTFx {stage['audio_s'] / asr_s:.1f} (audio s / wall s over "
            f"{stage['n_todo']} new utterances, model loading included)"
        )
    print(f"wall time     {info['wall_seconds']:.1f} s for {audio_s:.1f} s of audio")
    if ev.get("wer") is not None:
        print(
            f"WER           {100 * ev['wer']:.2f}% (95% CI {100 * ev['wer_ci_low']:.2f}"
            f"-{100 * ev['wer_ci_high']:.2f}), CER {100 * ev['cer']:.2f}%, "
            f"{ev['n_scored']} scored utterances ({ev['normalizer']} normaliser)"
        )
    else:
        print("WER           no references")
    print(f"flagged       {ev['n_flagged']} utterances")
    print(f"report        {summary['report']}")
    if summary.get("export"):
        _print_export(summary["export"])


def cmd_transcribe(args: argparse.Namespace) -> int:
    if problem := _precheck(args):
        return refuse(args.command, problem)
    from flows.task_runners import build_task_runner
    from flows.transcribe_corpus import DEFAULT_DECODING, transcribe_corpus
    from tasks.asr.evaluation import EvaluationOptions
    from tasks.asr.sources import ReadLimits

    runner = build_task_runner(args.task_runner, args.dask_address, args.dask_workers)
    flow_fn = transcribe_corpus
    if runner is not None:
        flow_fn = transcribe_corpus.with_options(task_runner=runner)
    parallel = 1 if args.task_runner == "local" else max(1, args.dask_workers)
    if runner is None:  # shards run in this process: load the model meanwhile
        from s2s_models.whisper.checkpoints import resolve_precision
        from tasks.asr.models import preload_asr

        precision = resolve_precision(args.device, args.precision)
        preload_asr(args.model, args.device, precision)
    with flow_api(args.api_server):
        summary = flow_fn(
            inputs=args.inputs,
            run_dir=args.out,
            model=args.model,
            device=args.device,
            precision=args.precision,
            options=options_from_args(args, "decoding", DEFAULT_DECODING),
            evaluation=options_from_args(args, "evaluation", EvaluationOptions()),
            limits=options_from_args(args, "limits", ReadLimits()),
            shard_size=args.shard_size,
            asr_shard_size=args.asr_shard_size,
            compare_to=args.compare,
            retry_failed=args.retry_failed,
            parallel_shards=parallel,
            export_to=args.export_to,
            output_formats=list(args.output_format),
        )
    emit(summary, args.json, _print_transcribe_summary)
    return exit_code(summary)


def _formats(spec: str) -> tuple[str, ...]:
    from tasks.asr.outputs import parse_formats

    try:
        return parse_formats(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _temperatures(spec: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in spec.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or any(t < 0 for t in values):
        raise argparse.ArgumentTypeError(
            f"not a temperature list: {spec!r} (e.g. 0 or 0,0.2,0.4,0.6,0.8,1)"
        )
    return values


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    """How Whisper decodes: fields of TranscribeOptions (each part of a
    transcript's key, so changing one redoes the transcripts)."""
    add_option(
        p, "--long-form", "decoding.longform_mode", choices=("vad", "sequential"),
        help="vad (default): VAD windows of all files decoded in batches, a window "
        "that stops early decoded again from where it stopped; sequential: "
        "openai-whisper's seek loop, one file and one window at a time (slower)",
    )  # fmt: skip
    add_option(
        p, "--temperature", "decoding.temperatures", type=_temperatures,
        metavar="T[,T...]",
        help="sampling temperatures tried in turn when a window's text fails the "
        "compression or log-prob check (default: 0,0.2,0.4,0.6,0.8,1; 0 alone: "
        "greedy only)",
    )  # fmt: skip
    add_option(
        p, "--no-speech-threshold", "decoding.no_speech_threshold", type=float,
        metavar="P",
        help="a window is skipped as silence when its no-speech probability is "
        "above P and its text is improbable (default: 0.6)",
    )  # fmt: skip
    add_option(
        p, "--condition-on-previous-text", "decoding.condition_on_previous_text",
        action=argparse.BooleanOptionalAction,
        help="prompt each window with the text before it (default: on with "
        "--long-form sequential, off in vad mode, where it measured worse and "
        "decodes each file's windows in order)",
    )  # fmt: skip
    add_option(
        p, "--initial-prompt", "decoding.initial_prompt", metavar="TEXT",
        help="context for the decoder, e.g. names and terms with their spelling",
    )  # fmt: skip
    add_option(
        p, "--vad-threshold", "decoding.vad_threshold", type=float, metavar="P",
        help="speech probability at which the VAD starts speech (default: 0.35)",
    )  # fmt: skip
    add_option(
        p, "--rescore-silences", "decoding.rescore_silences",
        action=argparse.BooleanOptionalAction,
        help="vad mode: score each stretch the VAD calls silence again on its own, "
        "so quiet speech after loud speech is decoded rather than cut out "
        "(default: on)",
    )  # fmt: skip
    add_option(
        p, "--word-timestamps", "decoding.word_timestamps", action="store_true",
        help="time every word (cross-attention alignment): the transcripts' words "
        "column and the JSON outputs get start, end and probability per word",
    )  # fmt: skip


def cmd_outputs(args: argparse.Namespace) -> int:
    from tasks.asr.outputs import OUTPUTS_DIR, write_outputs
    from tasks.asr.transcripts import TRANSCRIPTS
    from tasks.stage import RunLock, read_stage_record

    if read_stage_record(args.run_dir, TRANSCRIPTS) is None:
        return refuse(args.command, f"{args.run_dir} holds no transcripts")
    with RunLock(args.run_dir):
        written = write_outputs(args.run_dir, args.format)
    for fmt, n in written.items():
        print(f"{fmt:<5} {n} files in {Path(args.run_dir, OUTPUTS_DIR, fmt)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from flows.review_run import review_run
    from tasks.asr.evaluation import summary_path

    with flow_api(args.api_server):
        path = review_run(run_dir=args.run_dir, compare_to=args.compare)
    summary = json.loads(Path(summary_path(args.run_dir)).read_text())
    if summary.get("before_review"):
        from tasks.asr.report import review_text

        before, after = summary["before_review"]["wer"], summary["wer"]
        print(f"WER           {100 * after:.2f}% after review" if after is not None
              else "WER           no scored utterances after review")  # fmt: skip
        print(f"              {100 * before:.2f}% {review_text(summary)}")
    elif summary.get("wer") is not None:
        print(f"WER           {100 * summary['wer']:.2f}%")
    print(f"report        {path}")
    return 0


def _print_export(done: dict) -> None:
    print(
        f"exported      {done['n_files']} files to {done['dest']} "
        f"({done['uploaded']} uploaded, {done['bytes'] / 2**20:.1f} MB; "
        f"{done['unchanged']} unchanged; {done['deleted']} deleted)"
    )


def cmd_export(args: argparse.Namespace) -> int:
    from flows.export_run import export_run

    with flow_api(args.api_server):
        done = export_run(run_dir=args.run_dir, dest=args.dest)
    if args.json:
        print(json.dumps(done, indent=2))
    else:
        _print_export(done)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.serve import serve_project

    if not os.environ.get("PREFECT_API_URL"):
        print(
            "s2s serve: schedules need a Prefect server. Start one with "
            "'prefect server start' and set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api).",
            file=sys.stderr,
        )
        return 2
    os.chdir(Path(args.prefect_yaml).resolve().parent)
    serve_project(Path(args.prefect_yaml).resolve(), args.deployment or None)
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        required=True,
        metavar="RUN_DIR",
        help="run folder; every stage writes RUN_DIR/<stage>/part-*.parquet",
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=256,
        help="items per Prefect task (default: 256)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="redo items that failed in an earlier run of RUN_DIR",
    )
    add_option(
        p,
        "--max-file-size",
        "limits.max_bytes",
        type=parse_size,
        metavar="SIZE",
        help="input files (and manifests) larger than this are failed rows, "
        "not read (e.g. 500M, 16G; default: 4G)",
    )
    add_option(
        p,
        "--stall-timeout",
        "limits.stall_timeout_s",
        type=float,
        metavar="SECONDS",
        help="an input that makes no read or decode progress for this long is a "
        f"failed row (default: {DEFAULT_STALL_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s2s",
        description="Batch speech pipeline: resumable Prefect flows writing Parquet.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "ingest",
        help="ingest audio and compute log-mel features",
        description="Decode audio (directories, files, CSV/JSONL/Parquet manifests, "
        "fsspec URIs) to 16 kHz mono FLAC in RUN_DIR/ingest and Whisper log-mel in "
        "RUN_DIR/features. Reruns skip what is done.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    _add_common(p)
    add_option(
        p,
        "--n-mels",
        "features.n_mels",
        type=int,
        choices=(80, 128),
        help="Whisper log-mel bins (default: 80; 128 for large-v3)",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "transcribe",
        help="transcribe a corpus, score it, write a review report",
        description="ingest -> features -> transcripts (Whisper) -> evaluation -> "
        "RUN_DIR/report.html. Reruns transcribe only new or changed audio, or "
        "everything again when the model or decoding settings change.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    _add_common(p)
    p.add_argument(
        "--model",
        default="tiny.en",
        help="tiny.en (bundled, default), base (extra 'base'), or a "
        "checkpoint path (CTranslate2 or Hugging Face folder, OpenAI .pt)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="Whisper compute dtype; auto (default): float16 on CUDA, bfloat16 on "
        "CPUs with native bfloat16 (AMX, AVX-512 BF16), else float32",
    )
    add_option(
        p,
        "--batch-size",
        "decoding.batch_size",
        metavar="N",
        type=int,
        help="30 s windows decoded together; 0 (default): auto, from free GPU "
        "memory on CUDA (up to 256, halved on out-of-memory), 8 on CPU",
    )
    p.add_argument(
        "--asr-shard-size",
        type=int,
        default=64,
        help="utterances per transcription task (default: 64)",
    )
    add_option(
        p,
        "--beam-size",
        "decoding.beam_size",
        metavar="N",
        type=int,
        help="1 = greedy (default), 5 = beam search",
    )
    add_option(
        p,
        "--language",
        "decoding.language",
        metavar="LANGUAGE",
        help="language code; default: English for .en models, "
        "detected for multilingual ones",
    )
    _add_decoding_options(p)
    p.add_argument(
        "--output-format",
        type=_formats,
        default=(),
        metavar="FORMATS",
        help="also write each transcript as files: any of srt, vtt, txt, tsv, json "
        "(comma-separated) or all, into RUN_DIR/outputs/<format>/<utt_id>.<format>; "
        "'s2s outputs' rewrites them later without transcribing",
    )
    add_option(
        p,
        "--normalizer",
        "evaluation.normalizer",
        choices=("whisper_english", "basic"),
        help="text normalisation before WER (default: whisper_english)",
    )
    p.add_argument(
        "--compare",
        metavar="OTHER_RUN_DIR",
        default=None,
        help="also show what changed against another run",
    )
    p.add_argument(
        "--export-to",
        metavar="URI",
        default=None,
        help="at the end, mirror RUN_DIR to this fsspec URI (e.g. s3://bucket/run); "
        "see 's2s export'",
    )
    p.add_argument(
        "--task-runner",
        default="local",
        choices=("local", "dask"),
        help="local threads (default) or Dask (extra 'dask')",
    )
    p.add_argument(
        "--dask-address",
        default=None,
        metavar="tcp://HOST:PORT",
        help="use an existing Dask cluster (default: start a LocalCluster)",
    )
    p.add_argument(
        "--dask-workers",
        type=int,
        default=2,
        help="LocalCluster worker processes; shards in flight (default: 2)",
    )
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser(
        "report",
        help="(re)build RUN_DIR/report.html, optionally against another run",
        description="Rebuild the review report of a finished run; with --compare, "
        "show the WER delta (with its 95%% CI) and the utterances that got better "
        "or worse against OTHER_RUN_DIR.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--compare", metavar="OTHER_RUN_DIR", default=None)
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "outputs",
        help="write a run's transcripts as SRT, VTT, TXT, TSV or JSON files",
        description="Write RUN_DIR/outputs/<format>/<utt_id>.<format> from the "
        "transcripts a run already holds (no decoding); files of utterances the "
        "run no longer holds are removed.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--format",
        type=_formats,
        default=("srt", "vtt", "txt", "tsv", "json"),
        metavar="FORMATS",
        help="srt, vtt, txt, tsv, json (comma-separated) or all (default: all)",
    )
    p.set_defaults(func=cmd_outputs)

    p = sub.add_parser(
        "export",
        help="copy a run folder to object storage (any fsspec URI)",
        description="Mirror RUN_DIR's Parquet parts, stage records and report to "
        "DEST (s3://..., gs://..., az://... with the matching fsspec package "
        "installed, or a local folder). Only new or changed files are uploaded; "
        "DEST/_export.json, written last, lists the snapshot with sha256 sums.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "serve",
        help="serve the prefect.yaml deployments with their schedules (no work pool)",
        description="Run the deployments of prefect.yaml (nightly transcription, "
        "weekly review) on their cron schedules from this process. Needs a Prefect "
        "server: 'prefect server start' and PREFECT_API_URL.",
    )
    p.add_argument("--prefect-yaml", default="prefect.yaml")
    p.add_argument(
        "--deployment", action="append", help="serve only this deployment (repeatable)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect logs")
    p.set_defaults(func=cmd_serve)

    register_tts(sub)
    register_review(sub)
    return parser


# Commands that run a flow: their Prefect API server starts while they import
# (flows.api_server).
FLOW_COMMANDS = (
    "ingest",
    "transcribe",
    "report",
    "export",
    "synthesize",
    "train-tts",
)


def main(argv: list[str] | None = None) -> int:
    # Prefect reads its logging settings when first imported, which building the
    # parser does: set them first.
    words = sys.argv[1:] if argv is None else argv
    configure_env(verbose=bool({"-v", "--verbose"} & set(words)))
    args = build_parser().parse_args(argv)
    early = args.command in FLOW_COMMANDS
    args.api_server = LocalApiServer.start_early() if early else None
    try:
        return run_command(args.command, lambda: args.func(args))
    finally:
        if args.api_server is not None:
            args.api_server.close()


if __name__ == "__main__":
    sys.exit(main())
