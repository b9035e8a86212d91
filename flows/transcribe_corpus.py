"""Flow `transcribe-corpus`: ingest -> features -> transcripts -> evaluation -> report.

CLI: `s2s transcribe INPUT... --out RUN_DIR`. Every stage writes Parquet under
RUN_DIR/<stage>/ and a rerun only does what changed (new or changed audio, another
model or other decoding settings).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flows._stages import features_stage, ingest_stage, transcripts_stage
from flows.export_run import export_task
from s2s_models.whisper.checkpoints import resolve_precision
from tasks.evaluate import evaluate_run
from tasks.features import FeatureOptions
from tasks.ingest import IngestOptions
from tasks.report import render_markdown_summary, report_run, summary_table_rows
from tasks.shutdown import stop_on_signals
from tasks.sources import DEFAULT_MAX_BYTES, DEFAULT_STALL_S, ReadLimits
from tasks.stage import RunLock
from tasks.summary import summarize_ingest


@flow(name="transcribe-corpus", log_prints=False)
def transcribe_corpus(
    inputs: list[str],
    run_dir: str,
    model: str = "tiny.en",
    device: str = "auto",
    batch_size: int = 0,
    beam_size: int = 1,
    language: str | None = None,
    shard_size: int = 256,
    asr_shard_size: int = 64,
    normalizer: str = "whisper_english",
    compare_to: str | None = None,
    retry_failed: bool = False,
    parallel_shards: int = 1,
    precision: str = "auto",
    export_to: str | None = None,
    max_file_bytes: int = DEFAULT_MAX_BYTES,
    stall_timeout_s: float = DEFAULT_STALL_S,
) -> dict:
    """Transcribe a corpus into RUN_DIR, score it, and write RUN_DIR/report.html.

    `precision`: Whisper's compute dtype, "auto" (float16 on CUDA, bfloat16 on a
    CPU with native bfloat16 such as AMX, else float32), "float32", "bfloat16" or
    "float16". It is part of each transcript's key: changing it redoes the stage.
    `export_to`: an fsspec URI (e.g. s3://bucket/run) to mirror RUN_DIR to at the end.
    `max_file_bytes`, `stall_timeout_s`: inputs larger than this, or that make no
    read or decode progress for this long, are failed rows (`ReadLimits`).
    SIGTERM/SIGINT stop the run within `TERMINATION_BOUND_S` (`stop_on_signals`).

    Returns a JSON-friendly summary: file counts, audio hours, RTFx, WER with its
    95% CI when references exist, and each stage's report.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    settings = {"batch_size": batch_size, "beam_size": beam_size, "language": language}
    precision = resolve_precision(device, precision)  # "auto" -> a dtype name
    limits = ReadLimits(max_file_bytes, stall_timeout_s)
    with stop_on_signals(), RunLock(run_dir):
        stages = [
            ingest_stage(
                run_dir, inputs, IngestOptions(), shard_size, retry_failed, limits
            ),
            features_stage(run_dir, FeatureOptions(), shard_size, retry_failed),
            transcripts_stage(
                run_dir,
                model,
                device,
                settings,
                asr_shard_size,
                retry_failed,
                parallel_shards,
                precision,
            ),
        ]
        evaluation = evaluate_run(run_dir, {"normalizer": normalizer})
        summary = summarize_ingest(run_dir, stages)
        run_info = {
            "title": f"Transcription review: {Path(run_dir).name}",
            "model": model,
            "device": device,
            "precision": precision,
            "settings": settings,
            "inputs": inputs,
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "stage_seconds": {s.stage: s.wall_s for s in stages},
            "wall_seconds": round(time.perf_counter() - t0, 3),
        }
        report = report_run(run_dir, run_info, compare_to)
        exported = export_task(run_dir, export_to) if export_to else None
    summary.update(
        evaluation=evaluation, report=report, run_info=run_info, export=exported
    )
    _publish_artifacts(evaluation, run_info, report)
    return summary


def _publish_artifacts(evaluation: dict, run_info: dict, report: str) -> None:
    """The same summary in the Prefect UI (table, markdown, link to the report)."""
    create_table_artifact(
        key="transcription-summary",
        table=summary_table_rows(evaluation),
        description="Corpus and slice WER with 95% CIs",
    )
    create_markdown_artifact(
        key="transcription-report",
        markdown=render_markdown_summary(evaluation, run_info),
    )
    create_link_artifact(
        key="transcription-report-html",
        link=Path(report).resolve().as_uri(),
        link_text="report.html",
    )
