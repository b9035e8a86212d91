"""Planning: which rows a run still has to compute, grouped into shards.

A rerun computes each wanted row's key; a row whose key is already in the stage's
parts is skipped. Everything wanted (done or not) goes into `StagePlan.wanted`, so
the runner can drop the rows that are no longer wanted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tasks.stage.parts import list_parts, prepare_stage
from tasks.stage.spec import StageSpec

# Shard limits besides the row count: what one task holds in memory at once.
SHARD_MAX_SECONDS = 1800.0  # audio per downstream shard (115 MB as float32)
SHARD_MAX_SOURCE_BYTES = 256 << 20  # source file bytes per ingest shard


@dataclass(frozen=True)
class ExistingRow:
    input_key: str
    status: str
    part: Path


def existing_rows(
    parts: Iterable[Path], key_column: str = "input_key"
) -> dict[str, ExistingRow]:
    """Map utt_id -> ExistingRow over `parts` (reads only three columns)."""
    found: dict[str, ExistingRow] = {}
    for path in parts:
        cols = pq.read_table(path, columns=["utt_id", key_column, "status"]).to_pydict()
        for utt_id, key, status in zip(
            cols["utt_id"], cols[key_column], cols["status"], strict=True
        ):
            found[utt_id] = ExistingRow(key, status, path)
    return found


def is_done(row: ExistingRow | None, key: str, retry_failed: bool) -> bool:
    """Whether an existing row already answers for `key` (failed rows are redone
    only when asked: their inputs are unchanged, so they would fail again)."""
    if row is None or row.input_key != key:
        return False
    return row.status == "ok" or not retry_failed


def done_rows(run_dir: str | Path, stage: StageSpec) -> dict[str, ExistingRow]:
    """The rows a stage already holds (after cleaning up a killed run)."""
    return existing_rows(prepare_stage(run_dir, stage), stage.key_column)


@dataclass(frozen=True)
class Shard:
    """One task's work in a downstream stage: some rows of one upstream part."""

    upstream_part: str
    utt_ids: list[str]


@dataclass(frozen=True)
class StagePlan:
    """What a run of one stage does."""

    # one task's work each: a Shard, or (source stages) a list of keyed items
    shards: list[Shard] | list[list[dict]]
    sizes: list[float]  # each shard's size for progress: rows, or audio seconds
    wanted: dict[str, str]  # utt_id -> key of every row the stage should hold
    n_todo: int  # rows to compute in this run

    @property
    def n_skipped(self) -> int:
        return len(self.wanted) - self.n_todo


def plan_downstream(
    run_dir: str | Path,
    stage: StageSpec,
    params: Any,
    shard_size: int,
    retry_failed: bool = False,
    max_shard_seconds: float = SHARD_MAX_SECONDS,
) -> StagePlan:
    """Which ok rows of the stage's upstream still need the stage, grouped into
    shards of at most `shard_size` rows and `max_shard_seconds` of audio (so that a
    shard of long recordings stays as small in memory as one of short clips).

    A row's key is `stage.key(upstream_input_key, params)`. Shards are sized in
    audio seconds when `stage.weigh_by_seconds`, else in rows.
    """
    upstream = stage.upstream
    done = done_rows(run_dir, stage)
    wanted: dict[str, str] = {}
    shards, sizes = [], []
    columns = ["utt_id", "input_key", "status"]
    if "duration_s" in upstream.schema.names:
        columns.append("duration_s")
    for path in list_parts(run_dir, upstream):
        cols = pq.read_table(path, columns=columns).to_pydict()
        seconds = cols.get("duration_s") or [0.0] * len(cols["utt_id"])
        todo, todo_s = [], []
        for utt_id, up_key, status, dur in zip(
            cols["utt_id"], cols["input_key"], cols["status"], seconds, strict=True
        ):
            if status != "ok":
                continue
            key = stage.key(up_key, params)
            wanted[utt_id] = key
            if not is_done(done.get(utt_id), key, retry_failed):
                todo.append(utt_id)
                todo_s.append(dur or 0.0)
        own_s = dict(zip(todo, todo_s, strict=True))
        for ids in chunked_by(todo, todo_s, shard_size, max_shard_seconds):
            shards.append(Shard(str(path), ids))
            weigh = stage.weigh_by_seconds
            sizes.append(float(sum(own_s[u] for u in ids)) if weigh else len(ids))
    return StagePlan(shards, sizes, wanted, sum(len(s.utt_ids) for s in shards))


def chunked_by(
    items: list, weights: list[float], max_items: int, max_weight: float
) -> list[list]:
    """Consecutive groups of at most `max_items` items whose weights sum to at
    most `max_weight` (an item heavier than that on its own is a group of one)."""
    assert max_items > 0, "shard size must be positive"
    groups, current, total = [], [], 0.0
    for item, weight in zip(items, weights, strict=True):
        if current and (len(current) >= max_items or total + weight > max_weight):
            groups.append(current)
            current, total = [], 0.0
        current.append(item)
        total += weight
    if current:
        groups.append(current)
    return groups


def chunked(items: list, size: int) -> list[list]:
    assert size > 0, "shard size must be positive"
    return [items[i : i + size] for i in range(0, len(items), size)]
