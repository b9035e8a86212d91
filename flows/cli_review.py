"""`s2s review`: the review queue of one or more runs, in a browser or as files.

    s2s review RUN [RUN...]                  serve the queue on 127.0.0.1, print URL
    s2s review RUN --apply decisions.csv     apply decisions without a browser
    s2s review RUN [RUN...] --export q.csv   write the queue as CSV

Decisions land in RUN/reviews/ (`tasks.review.reviews`); `s2s report RUN`
re-scores against them and `s2s synthesize` regenerates rejected TTS items.
No Prefect here: reviewing writes one small Parquet part per decision.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from flows.cli_common import refuse

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


def apply_decisions(run_dir: str, path: str, reviewer: str) -> tuple[int, Path]:
    """Check every decision of the CSV file at `path` against RUN's items, then
    write them all as one reviews part. Raises DecisionsError (nothing written)."""
    from tasks.review.decisions import DecisionsError, decision_row, parse_decisions_csv
    from tasks.review.queue import queue_items
    from tasks.review.reviews import append_reviews

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DecisionsError(f"cannot read {path}: {exc.strerror or exc}") from None
    items = {item["utt_id"]: item for item in queue_items([run_dir])}
    known = {utt_id: item["kind"] for utt_id, item in items.items()}
    decisions = parse_decisions_csv(data, known, source=path)
    run = Path(run_dir).name
    rows = [
        decision_row(
            run,
            d["kind"],
            d["utt_id"],
            d["decision"],
            d["text"],
            items[d["utt_id"]]["reference"],
            reviewer,
            items[d["utt_id"]]["seed"],
        )
        for d in decisions
    ]
    return len(rows), append_reviews(run_dir, rows)


def _check_runs(run_dirs: list[str]) -> str | None:
    from tasks.review.queue import review_kind

    for run_dir in run_dirs:
        if not Path(run_dir).is_dir():
            return f"{run_dir} is not a folder"
        if review_kind(run_dir) is None:
            return f"{run_dir} holds neither transcripts nor a TTS evaluation"
    return None


def serve(args: argparse.Namespace) -> int:
    from tasks.review.server import make_server, server_url

    if args.host not in LOOPBACK and not args.allow_remote:
        return refuse(
            "review",
            f"--host {args.host} would let other machines reach the page: "
            "add --allow-remote if that is what you want",
        )
    server, _ = make_server(args.run_dirs, args.host, args.port, args.reviewer)
    if args.host not in LOOPBACK:
        print(
            f"s2s review: WARNING: serving on {args.host}, reachable from other "
            "machines; anyone who can open the page can review",
            file=sys.stderr,
        )
    print(f"review queue  {server_url(server)}  (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from tasks.review.decisions import DecisionsError

    if problem := _check_runs(args.run_dirs):
        return refuse("review", problem)
    if args.apply:
        if len(args.run_dirs) != 1:
            return refuse("review", "--apply takes exactly one RUN_DIR")
        try:
            n, part = apply_decisions(args.run_dirs[0], args.apply, args.reviewer)
        except DecisionsError as exc:
            return refuse("review", f"{exc}; nothing written")
        print(f"applied       {n} decisions -> {part}")
        print(f"next          s2s report {args.run_dirs[0]}  (re-scores, no decoding)")
        return 0
    if args.export:
        from tasks.review.queue import export_queue_csv, queue_items

        items = queue_items(args.run_dirs)
        text = export_queue_csv(items, args.run_dirs)
        Path(args.export).write_text(text, encoding="utf-8")
        print(f"exported      {len(items)} items to {args.export}")
        return 0
    return serve(args)


def register(subparsers) -> None:
    """Add `review` to the `s2s` subcommands."""
    p = subparsers.add_parser(
        "review",
        help="review a run's items in the browser, or apply/export decisions",
        description="Serve the review queue of RUN_DIRs (transcription and TTS runs) "
        "on a local page: items worth a listen first (flags, failed round trips, "
        "highest WER, lowest confidence, newest). Decisions (accept, correct the "
        "reference, reject) are appended to RUN_DIR/reviews/; 's2s report' "
        "re-scores with them and 's2s synthesize' regenerates rejected TTS items.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--apply",
        metavar="CSV",
        help="apply decisions from a CSV file (columns utt_id,decision,text; "
        "decision accept, correct or reject; text: the corrected reference) "
        "without a browser; a file with any bad line is refused whole",
    )
    p.add_argument("--export", metavar="CSV", help="write the queue as CSV and exit")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (the page is then reachable "
        "from other machines)",
    )
    p.add_argument(
        "--reviewer", default=_reviewer(), help="name recorded with each decision"
    )
    p.set_defaults(func=cmd_review)
