"""The one runner: every sharded stage, ASR and TTS alike, runs through `run_stage`.

    plan (what is still to do) -> allocate part numbers -> submit one Prefect task
    per shard (`stage_shard`: read upstream rows, key them, compute, write a part)
    -> drop rows no longer wanted -> write <stage>/_stage.json

A shard that raises (after its retry) is logged and reported; the other shards go
on and the run folder stays resumable.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from tqdm.auto import tqdm

from tasks.stage.memory import release_memory
from tasks.stage.parts import (
    compact_stage,
    iter_rows,
    next_part_index,
    write_rows,
    write_stage_record,
)
from tasks.stage.plan import Shard, StagePlan, plan_downstream
from tasks.stage.shutdown import StopRequested, stop_requested
from tasks.stage.spec import StageSpec

log = logging.getLogger("s2s")


@dataclass
class StageReport:
    """What one stage did in this run (also written to `<stage>/_stage.json`)."""

    stage: str
    n_shards: int = 0
    n_todo: int = 0
    n_skipped: int = 0
    n_removed: int = 0
    audio_s: float = 0.0  # audio seconds of the rows done in this run
    failed_shards: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def run_stage(
    run_dir: str,
    stage: StageSpec,
    params: Any,
    shard_size: int,
    retry_failed: bool = False,
    *,
    inputs: list[str] | None = None,
    max_in_flight: int | None = None,
    device: str | None = None,
) -> StageReport:
    """Bring `stage` of RUN_DIR up to date for `params` (a frozen dataclass).

    `inputs`: the files a source stage reads. `max_in_flight`: shards at once
    (default `stage.concurrency`). `device`: where the stage computes; on a Dask
    cluster a CUDA stage's shards take the worker's GPU slot.
    """
    started = time.perf_counter()
    if stage.upstream is None:
        plan = stage.plan(run_dir, inputs, params, shard_size, retry_failed)
    else:
        plan = plan_downstream(run_dir, stage, params, shard_size, retry_failed)
    report = StageReport(stage.name, len(plan.shards), plan.n_todo, plan.n_skipped)
    if stage.weigh_by_seconds:
        report.audio_s = round(sum(plan.sizes), 3)
    first = next_part_index(run_dir, stage)  # numbers up front: shards never race
    calls = [
        {
            "stage": stage,
            "run_dir": run_dir,
            "part_index": first + i,
            "work": work,
            "params": params,
        }
        for i, work in enumerate(plan.shards)
    ]
    shard_task = stage_shard.with_options(name=f"{stage.name}-shard")
    with gpu_annotation(device):
        report.failed_shards = run_shards(
            shard_task, calls, plan, stage, max_in_flight or stage.concurrency
        )
    source = {"upstream": stage.upstream.name} if stage.upstream else {"inputs": inputs}
    record = {**source, "parameters": asdict(params), "shard_size": shard_size}
    return finish_stage(run_dir, stage, report, plan.wanted, started, record)


def _unless_stopping(task, task_run, state) -> bool:
    """Retry a failed shard, unless it failed because the run is stopping."""
    return not stop_requested()


@task(
    cache_policy=NONE,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_unless_stopping,
)
def stage_shard(
    stage: StageSpec, run_dir: str, part_index: int, work: Shard | list[dict], params
) -> str:
    """Compute one shard of `stage` and write it as part `part_index`; return its
    path. A stage that stops early (the run is stopping) writes the rows done so
    far, then raises `StopRequested`."""
    n_rows = len(work.utt_ids) if isinstance(work, Shard) else len(work)
    rows = stage.compute(_shard_rows(stage, work, params), params)
    path = str(write_rows(run_dir, stage, part_index, rows)) if rows else ""
    release_memory()
    if len(rows) < n_rows:
        raise StopRequested(f"run stopping: {len(rows)} of {n_rows} rows done")
    return path


def _shard_rows(stage: StageSpec, work: Shard | list[dict], params) -> Iterator[dict]:
    """A shard's input rows: a source stage's keyed items as they are; else the
    upstream rows (`stage.inputs`) with this stage's `input_key`."""
    if not isinstance(work, Shard):
        yield from work
        return
    columns = ["utt_id", "input_key", *stage.inputs]
    for row in iter_rows(work.upstream_part, work.utt_ids, columns):
        row["input_key"] = stage.key(row["input_key"], params)
        yield row


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def run_shards(
    task, calls: Sequence[dict], plan: StagePlan, stage: StageSpec, max_in_flight: int
) -> list[str]:
    """Submit `task(**call)` for every call, at most `max_in_flight` at a time.

    A shard that raises (after its task retries) is logged and reported as an
    error string; the other shards go on. Returns one error string per failed
    shard. Raises `StopRequested` when the run is stopping (the shards in flight
    are left to finish or stop).
    """
    errors: list[str] = []
    unit = "audio s" if stage.weigh_by_seconds else stage.unit
    bar = tqdm(
        total=float(sum(plan.sizes)),
        desc=stage.name,
        unit=unit,
        disable=not progress_enabled(),
        leave=False,
        dynamic_ncols=True,
    )
    pending: dict = {}
    queue = list(zip(calls, plan.sizes, strict=True))
    while queue or pending:
        if stop_requested():  # a stop signal: start no new shard
            left = f"{len(queue)} {stage.name} shards not started"
            raise StopRequested(f"run stopping; {left}")
        while queue and len(pending) < max_in_flight:
            call, size = queue.pop(0)
            pending[task.submit(**call)] = (call, size)
        done = next(as_completed(list(pending)))
        call, size = pending.pop(done)
        try:
            done.result()
        except Exception as exc:  # noqa: BLE001 - one bad shard must not stop the run
            where = f"{stage.name} shard part {call['part_index']}"
            errors.append(f"{where}: {type(exc).__name__}: {exc}")
            log.error("%s", errors[-1])
        bar.update(size)
    bar.close()
    return errors


def finish_stage(
    run_dir: str,
    stage: StageSpec,
    report: StageReport,
    wanted: dict[str, str],
    started: float,
    record: dict,
) -> StageReport:
    """Drop rows that are no longer wanted, then write the stage record."""
    report.n_removed = compact_stage(run_dir, stage, wanted)
    report.wall_s = round(time.perf_counter() - started, 3)
    write_stage_record(run_dir, stage, {**record, **report.as_dict()})
    return report


def gpu_annotation(device: str | None):
    """Dask annotation that makes GPU shards take the worker's one GPU slot.

    Only inside a Dask task runner and only when the stage really uses CUDA;
    elsewhere a no-op context.
    """
    if device is None:
        return contextlib.nullcontext()
    from prefect.context import FlowRunContext

    from s2s_models.device import resolve_device

    ctx = FlowRunContext.get()
    runner = type(getattr(ctx, "task_runner", None)).__name__ if ctx else ""
    uses_cuda = resolve_device(device).type == "cuda"
    if runner != "DaskTaskRunner" or not uses_cuda:
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})
