"""Wiring shared by the flows: submit shard tasks, show progress, record each stage."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect.futures import as_completed
from tqdm.auto import tqdm

from tasks.shutdown import StopRequested, stop_requested
from tasks.stage import compact_stage, next_part_index, write_stage_record

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


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def run_shards(
    task,
    calls: Sequence[dict],
    sizes: Sequence[float],
    desc: str,
    unit: str,
    max_in_flight: int,
) -> list[str]:
    """Submit `task(**call)` for every call, at most `max_in_flight` at a time.

    A shard that raises (after its task retries) is logged and reported as an
    error string; the other shards go on and the run folder stays resumable.
    Returns one error string per failed shard. Raises `StopRequested` when the
    run is stopping (the shards in flight are left to finish or stop).
    """
    errors: list[str] = []
    bar = tqdm(
        total=float(sum(sizes)),
        desc=desc,
        unit=unit,
        disable=not progress_enabled(),
        leave=False,
        dynamic_ncols=True,
    )
    pending: dict = {}
    queue = list(zip(calls, sizes, strict=True))
    while queue or pending:
        if stop_requested():  # a stop signal: start no new shard
            raise StopRequested(f"run stopping; {len(queue)} {desc} shards not started")
        while queue and len(pending) < max_in_flight:
            call, size = queue.pop(0)
            pending[task.submit(**call)] = (call, size)
        done = next(as_completed(list(pending)))
        call, size = pending.pop(done)
        try:
            done.result()
        except Exception as exc:  # noqa: BLE001 - one bad shard must not stop the run
            where = call.get("part_index")
            errors.append(f"{desc} shard part {where}: {type(exc).__name__}: {exc}")
            log.error("%s", errors[-1])
        bar.update(size)
    bar.close()
    return errors


def finish_stage(
    run_dir: str,
    report: StageReport,
    wanted: dict[str, str],
    started: float,
    record: dict,
    key_column: str = "input_key",
) -> StageReport:
    """Drop rows that are no longer wanted, then write the stage record."""
    report.n_removed = compact_stage(run_dir, report.stage, wanted, key_column)
    report.wall_s = round(time.perf_counter() - started, 3)
    write_stage_record(run_dir, report.stage, {**record, **report.as_dict()})
    return report


def part_indices(run_dir: str, stage: str, n: int) -> list[int]:
    """Allocate `n` new part numbers for `stage` up front (no races between shards)."""
    first = next_part_index(run_dir, stage)
    return list(range(first, first + n))
