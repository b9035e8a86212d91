"""Stage steps shared by several flows: plan, run shards, compact, record."""

from __future__ import annotations

import time
from dataclasses import asdict

from flows._common import StageReport, finish_stage, part_indices, run_shards
from flows._runners import gpu_annotation
from tasks.features import FeatureOptions, feature_key, features_shard
from tasks.ingest import IngestOptions, ingest_shard, item_to_dict, plan_ingest
from tasks.sources import DEFAULT_LIMITS, ReadLimits
from tasks.stage import plan_downstream, shard_seconds
from tasks.transcribe import (
    model_fingerprint,
    transcribe_options,
    transcribe_shard,
    transcript_key,
)

INGEST_CONCURRENCY = 2  # decoding and resampling release the GIL


def ingest_stage(
    run_dir: str,
    inputs: list[str],
    options: IngestOptions,
    shard_size: int,
    retry_failed: bool,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> StageReport:
    started = time.perf_counter()
    limits.verify()
    plan = plan_ingest(
        run_dir, inputs, options, shard_size, retry_failed, limits.max_bytes
    )
    report = StageReport(
        "ingest", len(plan.shards), plan.n_todo, plan.n_items - plan.n_todo
    )
    indices = part_indices(run_dir, "ingest", len(plan.shards))
    calls = [
        {
            "run_dir": run_dir,
            "part_index": index,
            "items": [item_to_dict(it) for it in shard],
            "request_keys": keys,
            "options": asdict(options),
            "limits": asdict(limits),
        }
        for index, shard, keys in zip(
            indices, plan.shards, plan.request_keys, strict=True
        )
    ]
    report.failed_shards = run_shards(
        ingest_shard,
        calls,
        [len(s) for s in plan.shards],
        "ingest",
        "file",
        INGEST_CONCURRENCY,
    )
    record = {
        "inputs": inputs,
        "parameters": asdict(options),
        "limits": asdict(limits),
        "shard_size": shard_size,
    }
    return finish_stage(run_dir, report, plan.wanted, started, record, "request_key")


def features_stage(
    run_dir: str, options: FeatureOptions, shard_size: int, retry_failed: bool
) -> StageReport:
    started = time.perf_counter()
    shards, wanted = plan_downstream(
        run_dir,
        "ingest",
        "features",
        lambda k: feature_key(k, options),
        shard_size,
        retry_failed,
    )
    n_todo = sum(s.n_items for s in shards)
    report = StageReport("features", len(shards), n_todo, len(wanted) - n_todo)
    indices = part_indices(run_dir, "features", len(shards))
    calls = [
        {
            "run_dir": run_dir,
            "part_index": index,
            "ingest_part": shard.upstream_part,
            "utt_ids": shard.utt_ids,
            "options": asdict(options),
        }
        for index, shard in zip(indices, shards, strict=True)
    ]
    report.failed_shards = run_shards(
        features_shard, calls, [s.n_items for s in shards], "features", "utt", 1
    )
    record = {
        "upstream": "ingest",
        "parameters": asdict(options),
        "shard_size": shard_size,
    }
    return finish_stage(run_dir, report, wanted, started, record)


def transcripts_stage(
    run_dir: str,
    model: str,
    device: str,
    settings: dict,
    shard_size: int,
    retry_failed: bool,
    parallel_shards: int = 1,
    precision: str = "float32",
) -> StageReport:
    """`parallel_shards`: shards in flight at once. 1 locally (one model in the
    process, shards queue behind each other); the number of workers on Dask.
    `precision`: the compute dtype's name, resolved once for the whole run by the
    flow (`resolve_precision`), since it is part of every row's key."""
    started = time.perf_counter()
    options = transcribe_options(settings)
    model_fp = model_fingerprint(model)
    shards, wanted = plan_downstream(
        run_dir,
        "ingest",
        "transcripts",
        lambda k: transcript_key(k, model_fp, options, precision),
        shard_size,
        retry_failed,
    )
    n_todo = sum(s.n_items for s in shards)
    report = StageReport("transcripts", len(shards), n_todo, len(wanted) - n_todo)
    indices = part_indices(run_dir, "transcripts", len(shards))
    seconds = shard_seconds(shards)
    report.audio_s = round(sum(seconds), 3)
    calls = [
        {
            "run_dir": run_dir,
            "part_index": index,
            "ingest_part": shard.upstream_part,
            "utt_ids": shard.utt_ids,
            "model": model,
            "device": device,
            "settings": settings,
            "model_fp": model_fp,
            "precision": precision,
        }
        for index, shard in zip(indices, shards, strict=True)
    ]
    with gpu_annotation(device):
        report.failed_shards = run_shards(
            transcribe_shard, calls, seconds, "transcribe", "audio s", parallel_shards
        )
    record = {
        "upstream": "ingest",
        "model": model,
        "model_fingerprint": model_fp,
        "device": device,
        "precision": precision,
        "parameters": settings,
        "shard_size": shard_size,
    }
    return finish_stage(run_dir, report, wanted, started, record)
