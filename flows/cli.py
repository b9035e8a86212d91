"""`s2s`: the command line, a thin wrapper over the flows.

Prefect runs embedded: with no PREFECT_API_URL set, each command starts a temporary
local API for its own run, so nothing needs to be set up first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

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


def cmd_ingest(args: argparse.Namespace) -> int:
    from flows.ingest_corpus import ingest_corpus

    summary = ingest_corpus(
        inputs=args.inputs,
        run_dir=args.out,
        shard_size=args.shard_size,
        n_mels=args.n_mels,
        retry_failed=args.retry_failed,
    )
    _emit(summary, args, _print_ingest_summary)
    return _exit_code(summary)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_env(getattr(args, "verbose", False))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
