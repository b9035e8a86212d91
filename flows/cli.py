"""`s2s`: the command line, a thin wrapper over the flows.

Prefect runs embedded: with no PREFECT_API_URL set, each command starts a temporary
local API for its own run, so nothing needs to be set up first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from flows.cli_checks import (
    check_inputs,
    check_out_dir,
    parse_size,
    refuse,
    run_command,
)
from tasks.sources import DEFAULT_MAX_BYTES, DEFAULT_STALL_S

QUIET_ENV = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def _configure_env(verbose: bool) -> None:
    for key, value in QUIET_ENV.items():
        if key == "PREFECT_LOGGING_LEVEL" and verbose:
            value = "INFO"
        os.environ.setdefault(key, value)
    if not verbose:  # Dask scheduler and worker processes read this too
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


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
    for name, stage in summary["stages"].items():
        print(
            f"stage {name:<12} new {stage['n_todo']:>6}  skip {stage['n_skipped']:>6}"
            f"  removed {stage['n_removed']:>4}  {stage['wall_s']:.1f} s"
            + (
                f"  FAILED SHARDS {len(stage['failed_shards'])}"
                if stage["failed_shards"]
                else ""
            )
        )
    for failure in summary["failures"]:
        print(f"  failed  {failure['utt_id']}: {failure['error']}")
    if summary["n_failed"] > len(summary["failures"]):
        print(
            f"  ... and {summary['n_failed'] - len(summary['failures'])} more failures"
        )


def _precheck(args: argparse.Namespace) -> str | None:
    """Why an ingest/transcribe command cannot start, or None (before Prefect)."""
    return check_inputs(args.inputs) or check_out_dir(args.out, "transcription")


def cmd_ingest(args: argparse.Namespace) -> int:
    if problem := _precheck(args):
        return refuse(args.command, problem)
    from flows.ingest_corpus import ingest_corpus

    summary = ingest_corpus(
        inputs=args.inputs,
        run_dir=args.out,
        shard_size=args.shard_size,
        n_mels=args.n_mels,
        retry_failed=args.retry_failed,
        max_file_bytes=args.max_file_size,
        stall_timeout_s=args.stall_timeout,
    )
    _emit(summary, args, _print_ingest_summary)
    return _exit_code(summary)


def _print_transcribe_summary(summary: dict) -> None:
    _print_ingest_summary(summary)
    ev, info = summary["evaluation"], summary["run_info"]
    asr_s = info["stage_seconds"].get("transcripts") or 0.0
    audio_s = summary["audio_hours"] * 3600
    stage = summary["stages"]["transcripts"]
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
    from flows._runners import build_task_runner, task_runner_env
    from flows.transcribe_corpus import transcribe_corpus

    runner = build_task_runner(args.task_runner, args.dask_address, args.dask_workers)
    flow_fn = transcribe_corpus
    if runner is not None:
        flow_fn = transcribe_corpus.with_options(task_runner=runner)
    parallel = 1 if args.task_runner == "local" else max(1, args.dask_workers)
    with task_runner_env(args.task_runner):
        summary = _run_transcribe(flow_fn, args, parallel)
    _emit(summary, args, _print_transcribe_summary)
    return _exit_code(summary)


def _run_transcribe(flow_fn, args: argparse.Namespace, parallel: int) -> dict:
    return flow_fn(
        inputs=args.inputs,
        run_dir=args.out,
        model=args.model,
        device=args.device,
        batch_size=args.batch_size,
        beam_size=args.beam_size,
        language=args.language,
        shard_size=args.shard_size,
        asr_shard_size=args.asr_shard_size,
        normalizer=args.normalizer,
        compare_to=args.compare,
        retry_failed=args.retry_failed,
        parallel_shards=parallel,
        precision=args.precision,
        export_to=args.export_to,
        max_file_bytes=args.max_file_size,
        stall_timeout_s=args.stall_timeout,
    )


def cmd_report(args: argparse.Namespace) -> int:
    from flows.review_run import review_run

    path = review_run(run_dir=args.run_dir, compare_to=args.compare)
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


def _emit(summary: dict, args: argparse.Namespace, printer) -> None:
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        printer(summary)


def _exit_code(summary: dict) -> int:
    """0 when every stage ran all its shards (failed items are data, not errors)."""
    failed = any(s["failed_shards"] for s in summary["stages"].values())
    return 1 if failed else 0


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
    p.add_argument(
        "--max-file-size",
        type=parse_size,
        default=DEFAULT_MAX_BYTES,
        metavar="SIZE",
        help="input files (and manifests) larger than this are failed rows, "
        "not read (e.g. 500M, 16G; default: 4G)",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=DEFAULT_STALL_S,
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
    p.add_argument("--n-mels", type=int, default=80, choices=(80, 128))
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
    p.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="30 s windows decoded together; 0 (default): auto, from free GPU "
        "memory on CUDA (up to 256, halved on out-of-memory), 8 on CPU",
    )
    p.add_argument(
        "--asr-shard-size",
        type=int,
        default=64,
        help="utterances per transcription task (default: 64)",
    )
    p.add_argument(
        "--beam-size", type=int, default=1, help="1 = greedy (default), 5 = beam search"
    )
    p.add_argument(
        "--language",
        default=None,
        help="language code; default: English for .en models, "
        "detected for multilingual ones",
    )
    p.add_argument(
        "--normalizer",
        default="whisper_english",
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

    from flows.cli_tts import register as register_tts

    register_tts(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_env(getattr(args, "verbose", False))
    return run_command(args.command, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
