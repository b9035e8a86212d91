"""A stage, declared once: its name, its Parquet columns, where its rows come from,
how a row is keyed and how a shard of rows is computed.

Every stage module ends with one `StageSpec`; the runner (`tasks.stage.runner`)
plans, shards, writes, compacts and records every stage the same way from it, and
the part I/O (`tasks.stage.parts`) checks every part against it. The stage's name
is its output folder (`RUN_DIR/<name>/`) and is written into its schema, so it is
spelled once, in the spec.

Every row is keyed by `utt_id`. `input_key` fingerprints everything the row was
computed from (source content hash, upstream keys, model and settings): a rerun
skips a row only when its key is unchanged. `status` is 'ok' or 'failed'; a failed
row carries a human-readable `error` and nulls elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SCHEMA_VERSION_KEY = b"s2s.schema_version"
STAGE_KEY = b"s2s.stage"

# The columns every keyed stage ends with.
ROW_STATUS = (
    ("status", pa.string()),  # 'ok' | 'failed'
    ("error", pa.string()),  # null when ok
)

# compute(rows, params) -> output rows: the rows are upstream rows (the `inputs`
# columns, `utt_id`, and `input_key` already replaced by this stage's key) or, for
# a source stage, the items its planner made.
Compute = Callable[[Iterable[dict], Any], list[dict]]


class StageError(RuntimeError):
    """A stage's outputs cannot be used as they are (wrong schema, folder locked)."""


@dataclass(frozen=True, eq=False)
class StageSpec:
    """One stage of a run folder.

    A downstream stage (`upstream` set) turns the ok rows of its upstream stage
    into rows of its own: `key(upstream_input_key, params)` is a row's key and
    `compute(rows, params)` makes a shard's rows. A source stage (`upstream` None)
    reads input files instead: its `plan(run_dir, inputs, params, shard_size,
    retry_failed)` returns a `StagePlan` whose shards are lists of keyed items. A
    stage that its flow computes whole (`evaluation`) has neither.
    """

    name: str  # RUN_DIR/<name>/, and the stage key in the schema's metadata
    version: int  # schema version: bump it when a column is added, removed or redefined
    columns: tuple[tuple[str, pa.DataType], ...]
    upstream: StageSpec | None = None
    key: Callable[[str, Any], str] | None = None
    compute: Compute | None = None
    plan: Callable | None = None  # source stages only
    inputs: tuple[
        str, ...
    ] = ()  # upstream columns compute reads (utt_id, input_key too)
    key_column: str = "input_key"  # the column a rerun compares (ingest: request_key)
    unit: str = "utt"  # what a shard's size counts, for the progress bar
    weigh_by_seconds: bool = False  # shards sized (and timed) in upstream audio seconds
    concurrency: int = 1  # shards in flight at once (a flow may ask for more)

    def __post_init__(self) -> None:
        names = [name for name, _ in self.columns]
        assert len(names) == len(set(names)), f"duplicate column in {self.name}"
        assert (self.upstream is None) or (self.plan is None), "plan: sources only"

    @functools.cached_property
    def schema(self) -> pa.Schema:
        metadata = {
            SCHEMA_VERSION_KEY: str(self.version).encode(),
            STAGE_KEY: self.name.encode(),
        }
        return pa.schema(list(self.columns), metadata=metadata)

    def __repr__(self) -> str:
        return f"StageSpec({self.name!r}, version {self.version})"


def schema_version(schema: pa.Schema) -> int:
    return int((schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"0"))


def failed_row(row: dict, error: str) -> dict:
    """`row` (utt_id, input_key and whatever is already known) as a failed row."""
    return {**row, "status": "failed", "error": error}


def error_text(exc: BaseException) -> str:
    """How an exception reads in a failed row's `error`."""
    return f"{type(exc).__name__}: {exc}"
