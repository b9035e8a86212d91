"""Flow `review-run`: rebuild a run's evaluation and report, optionally comparing.

CLI: `s2s report RUN_DIR [--compare OTHER_RUN_DIR]`.
"""

from __future__ import annotations

from prefect import flow

from tasks.evaluate import evaluate_run
from tasks.report import report_run
from tasks.shutdown import stop_on_signals
from tasks.stage import RunLock, read_stage_record


@flow(name="review-run", log_prints=False)
def review_run(
    run_dir: str, compare_to: str | None = None, normalizer: str = "whisper_english"
) -> str:
    """Re-score RUN_DIR's transcripts and write RUN_DIR/report.html; return its path."""
    record = read_stage_record(run_dir, "transcripts")
    if record is None:
        raise FileNotFoundError(
            f"{run_dir} has no transcripts stage: run s2s transcribe"
        )
    with stop_on_signals(), RunLock(run_dir):
        evaluate_run(run_dir, {"normalizer": normalizer})
        run_info = {
            "title": f"Transcription review: {run_dir}",
            "model": record.get("model"),
            "settings": record.get("parameters"),
            "stage_seconds": {"transcripts": record.get("wall_s")},
        }
        return report_run(run_dir, run_info, compare_to)
