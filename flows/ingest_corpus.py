"""Flow `ingest-corpus`: ingest -> features over shards, resumable.

CLI: `s2s ingest INPUT... --out RUN_DIR`.
"""

# Without `from __future__ import annotations`: Prefect validates the parameters
# against these annotations, and a served flow's function travels to its run's
# process pickled by value, with only the globals its body uses: string
# annotations naming the option dataclasses could not be resolved there.

from prefect import flow

from tasks.asr.features import FEATURES, FeatureOptions
from tasks.asr.ingest import INGEST, IngestOptions, IngestParams
from tasks.asr.sources import ReadLimits
from tasks.asr.summary import summarize_ingest
from tasks.stage import RunLock
from tasks.stage.runner import run_stage
from tasks.stage.shutdown import stop_on_signals


@flow(name="ingest-corpus", log_prints=False)
def ingest_corpus(
    inputs: list[str],
    run_dir: str,
    ingest: IngestOptions = IngestOptions(),
    features: FeatureOptions = FeatureOptions(),
    limits: ReadLimits = ReadLimits(),
    shard_size: int = 256,
    retry_failed: bool = False,
) -> dict:
    """Ingest audio inputs into RUN_DIR/ingest and compute RUN_DIR/features.

    `limits`: inputs larger than `max_bytes`, or that make no read or decode
    progress for `stall_timeout_s`, are failed rows. SIGTERM/SIGINT stop the run
    within `TERMINATION_BOUND_S` (`stop_on_signals`). Returns a JSON-friendly
    summary (counts, audio hours, per-stage reports).
    """
    params = IngestParams(ingest, limits)
    for options in (ingest, features, limits):
        options.verify()
    with stop_on_signals(), RunLock(run_dir):
        stages = [
            run_stage(run_dir, INGEST, params, shard_size, retry_failed, inputs=inputs),
            run_stage(run_dir, FEATURES, features, shard_size, retry_failed),
        ]
        return summarize_ingest(run_dir, stages)
