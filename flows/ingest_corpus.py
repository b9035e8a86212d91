"""Flow `ingest-corpus`: ingest -> features over shards, resumable.

CLI: `s2s ingest INPUT... --out RUN_DIR`.
"""

from __future__ import annotations

from prefect import flow

from flows._stages import features_stage, ingest_stage
from tasks.features import FeatureOptions
from tasks.ingest import IngestOptions
from tasks.shutdown import stop_on_signals
from tasks.sources import DEFAULT_MAX_BYTES, DEFAULT_STALL_S, ReadLimits
from tasks.stage import RunLock
from tasks.summary import summarize_ingest


@flow(name="ingest-corpus", log_prints=False)
def ingest_corpus(
    inputs: list[str],
    run_dir: str,
    shard_size: int = 256,
    n_mels: int = 80,
    sample_rate: int = 16000,
    retry_failed: bool = False,
    max_file_bytes: int = DEFAULT_MAX_BYTES,
    stall_timeout_s: float = DEFAULT_STALL_S,
) -> dict:
    """Ingest audio inputs into RUN_DIR/ingest and compute RUN_DIR/features.

    `max_file_bytes`, `stall_timeout_s`: inputs larger than this, or that make no
    read or decode progress for this long, are failed rows (`ReadLimits`).
    SIGTERM/SIGINT stop the run within `TERMINATION_BOUND_S` (`stop_on_signals`).
    Returns a JSON-friendly summary (counts, audio hours, per-stage reports).
    """
    limits = ReadLimits(max_file_bytes, stall_timeout_s)
    with stop_on_signals(), RunLock(run_dir):
        ingest = ingest_stage(
            run_dir,
            inputs,
            IngestOptions(sample_rate=sample_rate),
            shard_size,
            retry_failed,
            limits,
        )
        features = features_stage(
            run_dir, FeatureOptions(n_mels=n_mels), shard_size, retry_failed
        )
        return summarize_ingest(run_dir, [ingest, features])
