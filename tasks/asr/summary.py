"""Run summaries: counts and totals read back from the stage outputs."""

from __future__ import annotations

import pyarrow.compute as pc

from tasks.asr.ingest import INGEST
from tasks.stage import read_stage

MAX_LISTED_FAILURES = 20


def summarize_ingest(run_dir: str, reports: list) -> dict:
    """Counts of ok/failed inputs, audio hours, the first failures, stage reports."""
    table = read_stage(
        run_dir, INGEST, ["utt_id", "source_path", "status", "error", "duration_s"]
    )
    ok = pc.equal(table["status"], "ok")
    failed = table.filter(pc.invert(ok))
    seconds = pc.sum(table.filter(ok)["duration_s"]).as_py() or 0.0
    return {
        "run_dir": str(run_dir),
        "n_files": table.num_rows,
        "n_ok": table.num_rows - failed.num_rows,
        "n_failed": failed.num_rows,
        "audio_hours": seconds / 3600.0,
        "failures": [
            {
                "utt_id": r["utt_id"],
                "source_path": r["source_path"],
                "error": r["error"],
            }
            for r in failed.slice(0, MAX_LISTED_FAILURES).to_pylist()
        ],
        "stages": {r.stage: r.as_dict() for r in reports},
    }
