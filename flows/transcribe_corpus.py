"""Flow `transcribe-corpus`: ingest -> features -> transcripts -> evaluation -> report.

CLI: `s2s transcribe INPUT... --out RUN_DIR`. Every stage writes Parquet under
RUN_DIR/<stage>/ and a rerun only does what changed (new or changed audio, another
model or other decoding settings).
"""

# Without `from __future__ import annotations`: Prefect validates the parameters
# against these annotations, and a served flow's function travels to its run's
# process pickled by value, with only the globals its body uses: string
# annotations naming the option dataclasses could not be resolved there.

import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flows.export_run import export_task
from s2s_models import TranscribeOptions
from s2s_models.whisper.checkpoints import resolve_precision
from tasks.asr.evaluation import EvaluationOptions, evaluate_run
from tasks.asr.features import FEATURES, FeatureOptions
from tasks.asr.ingest import INGEST, IngestParams
from tasks.asr.outputs import parse_formats, write_outputs
from tasks.asr.report import render_markdown_summary, report_run, summary_table_rows
from tasks.asr.sources import ReadLimits
from tasks.asr.summary import summarize_ingest
from tasks.asr.transcripts import TRANSCRIPTS, transcripts_params
from tasks.stage import RunLock
from tasks.stage.runner import run_stage
from tasks.stage.shutdown import stop_on_signals

# The pipeline's decoding default: batch size 0 sizes batches from free GPU memory
# (8 on the CPU). Every other field is TranscribeOptions' own default.
DEFAULT_DECODING = TranscribeOptions(batch_size=0)


@flow(name="transcribe-corpus", log_prints=False)
def transcribe_corpus(
    inputs: list[str],
    run_dir: str,
    model: str = "tiny.en",
    device: str = "auto",
    precision: str = "auto",
    options: TranscribeOptions = DEFAULT_DECODING,
    evaluation: EvaluationOptions = EvaluationOptions(),
    limits: ReadLimits = ReadLimits(),
    shard_size: int = 256,
    asr_shard_size: int = 64,
    compare_to: str | None = None,
    retry_failed: bool = False,
    parallel_shards: int = 1,
    export_to: str | None = None,
    output_formats: list[str] = [],  # noqa: B006 - a flow parameter, never mutated
) -> dict:
    """Transcribe a corpus into RUN_DIR, score it, and write RUN_DIR/report.html.

    `options`: how Whisper decodes (`TranscribeOptions`; in a deployment's
    parameters a mapping of its fields, the others taking the dataclass defaults).
    `precision`: Whisper's compute dtype, "auto" (float16 on CUDA, bfloat16 on a
    CPU with native bfloat16 such as AMX, else float32), "float32", "bfloat16" or
    "float16". Both are part of each transcript's key: changing them redoes the
    stage. `evaluation`: normaliser, flags and confidence intervals of the scoring.
    `limits`: inputs larger than `max_bytes`, or that make no read or decode
    progress for `stall_timeout_s`, are failed rows. `parallel_shards`: transcript
    shards in flight (1 locally, one model per process; the worker count on Dask).
    `export_to`: an fsspec URI (e.g. s3://bucket/run) to mirror RUN_DIR to at the
    end. `output_formats`: any of srt, vtt, txt, tsv, json, written per utterance
    under RUN_DIR/outputs/<format>/. SIGTERM/SIGINT stop the run within
    `TERMINATION_BOUND_S` (`stop_on_signals`).

    Returns a JSON-friendly summary: file counts, audio hours, RTFx, WER with its
    95% CI when references exist, and each stage's report.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    precision = resolve_precision(device, precision)  # "auto" -> a dtype name
    limits.verify()
    evaluation.verify()
    with stop_on_signals(), RunLock(run_dir):
        asr = transcripts_params(model, device, precision, options)
        ingest = IngestParams(limits=limits)
        stages = [
            run_stage(run_dir, INGEST, ingest, shard_size, retry_failed, inputs=inputs),
            run_stage(run_dir, FEATURES, FeatureOptions(), shard_size, retry_failed),
            run_stage(
                run_dir,
                TRANSCRIPTS,
                asr,
                asr_shard_size,
                retry_failed,
                max_in_flight=parallel_shards,
                device=device,
            ),
        ]
        scores = evaluate_run(run_dir, evaluation)
        outputs = write_outputs(run_dir, parse_formats(",".join(output_formats)))
        summary = summarize_ingest(run_dir, stages)
        run_info = {
            "title": f"Transcription review: {Path(run_dir).name}",
            "model": model,
            "device": device,
            "precision": precision,
            "settings": asdict(options),
            "inputs": inputs,
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "stage_seconds": {s.stage: s.wall_s for s in stages},
            "wall_seconds": round(time.perf_counter() - t0, 3),
        }
        report = report_run(run_dir, run_info, compare_to)
        exported = export_task(run_dir, export_to) if export_to else None
    summary.update(
        evaluation=scores,
        report=report,
        run_info=run_info,
        export=exported,
        outputs=outputs,
    )
    _publish_artifacts(scores, run_info, report)
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
