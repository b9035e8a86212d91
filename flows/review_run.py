"""Flow `review-run`: rebuild a run's evaluation and report, optionally comparing.

CLI: `s2s report RUN_DIR [--compare OTHER_RUN_DIR]`.
"""

# Without `from __future__ import annotations`: Prefect validates the parameters
# against these annotations, and a served flow's function travels to its run's
# process pickled by value, with only the globals its body uses: string
# annotations naming the option dataclasses could not be resolved there.

from prefect import flow

from tasks.asr.evaluation import EvaluationOptions, evaluate_run
from tasks.asr.report import report_run
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import RunLock, read_stage_record
from tasks.stage.shutdown import stop_on_signals


@flow(name="review-run", log_prints=False)
def review_run(
    run_dir: str,
    compare_to: str | None = None,
    evaluation: EvaluationOptions = EvaluationOptions(),
) -> str:
    """Re-score RUN_DIR's transcripts and write RUN_DIR/report.html; return its path."""
    record = read_stage_record(run_dir, TRANSCRIPTS)
    if record is None:
        raise FileNotFoundError(
            f"{run_dir} has no transcripts stage: run s2s transcribe"
        )
    parameters = record.get("parameters") or {}
    with stop_on_signals(), RunLock(run_dir):
        evaluate_run(run_dir, evaluation)
        run_info = {
            "title": f"Transcription review: {run_dir}",
            "model": parameters.get("model"),
            "settings": parameters.get("options"),
            "stage_seconds": {TRANSCRIPTS.name: record.get("wall_s")},
        }
        return report_run(run_dir, run_info, compare_to)
