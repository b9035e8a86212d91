"""Part I/O: how every stage reads, writes and resumes its Parquet parts.

Layout of a run folder::

    RUN_DIR/
      .lock                     held (flock) by the run using the folder
      <stage>/part-NNNNN.parquet
      <stage>/_stage.json       what the last run of the stage consumed and produced
                                (names starting with '_' or '.' are skipped by
                                pandas/pyarrow readers of the folder)
      <stage>/_corrupt/         unreadable parts moved aside, never read as data

Rules that make a stage restartable:

- A part is written to a temporary name and renamed into place, so a part either
  exists whole or not at all. Temporary files left by a killed run are removed.
- What is finished is derived from the parts themselves (their `utt_id` and
  `input_key` columns), never from a separate ledger that could disagree with them.
- Rows that are no longer wanted (file removed, content or settings changed) are
  dropped by `compact_stage`, which rewrites affected parts atomically. After a
  stage completes, every wanted utterance is present exactly once.
- Part numbers for a run are allocated up front by the caller, so concurrent shard
  tasks never race for a name.
- Every part is checked against its stage's spec (stage name and schema version)
  before it is read: a part written by another layout is an error, never data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.stage.failpoints import disk_full, failpoint
from tasks.stage.spec import STAGE_KEY, StageError, StageSpec, schema_version

log = logging.getLogger(__name__)

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
TMP_MARKER = ".tmp-"
QUARANTINE_DIR = "_corrupt"  # <stage>/_corrupt/: unreadable parts moved aside
RECORD_FILE = "_stage.json"
CODE_VERSION = "0.1.0"
ROW_GROUP_BYTES = 32 << 20  # readers hold about one row group in memory


def stage_dir(run_dir: str | Path, stage: StageSpec) -> Path:
    return Path(run_dir) / stage.name


def part_path(run_dir: str | Path, stage: StageSpec, index: int) -> Path:
    return stage_dir(run_dir, stage) / f"{PART_PREFIX}{index:05d}{PART_SUFFIX}"


def _part_index(path: Path) -> int:
    return int(path.name[len(PART_PREFIX) : -len(PART_SUFFIX)])


def list_parts(run_dir: str | Path, stage: StageSpec) -> list[Path]:
    """The stage's part files, in part order (temporary files left out)."""
    folder = stage_dir(run_dir, stage)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(PART_PREFIX)
        and p.name.endswith(PART_SUFFIX)
        and TMP_MARKER not in p.name
    )


def next_part_index(run_dir: str | Path, stage: StageSpec) -> int:
    parts = list_parts(run_dir, stage)
    return max(map(_part_index, parts)) + 1 if parts else 0


def check_part(path: Path, stage: StageSpec) -> None:
    """Raise if `path` is not a complete part of the current schema of `stage`."""
    meta = pq.read_metadata(path)  # raises on a truncated footer
    schema = meta.schema.to_arrow_schema()
    found_stage = (schema.metadata or {}).get(STAGE_KEY, b"").decode()
    if found_stage != stage.name:
        raise StageError(f"{path} belongs to stage {found_stage!r}, not {stage.name!r}")
    got = schema_version(schema)
    if got != stage.version:
        raise StageError(
            f"{path} has schema version {got}, this code writes {stage.version}: "
            "use a new run folder or delete the stage folder"
        )


def prepare_stage(run_dir: str | Path, stage: StageSpec) -> list[Path]:
    """Clean up after a killed run and return the stage's valid parts.

    Temporary files are deleted. A part that cannot be read (truncated, not Parquet)
    is moved to `<stage>/_corrupt/` with a warning, so its rows are redone. A part of
    another schema version is an error: mixing layouts silently is never right.
    """
    folder = stage_dir(run_dir, stage)
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(f".*{TMP_MARKER}*"):
        tmp.unlink(missing_ok=True)
    good = []
    for path in list_parts(run_dir, stage):
        try:
            check_part(path, stage)
        except StageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any read failure means corrupt
            quarantine = folder / QUARANTINE_DIR
            quarantine.mkdir(exist_ok=True)
            target = quarantine / f"{path.name}.{int(time.time())}"
            path.rename(target)
            log.warning(
                "corrupt part %s moved to %s (%s); redoing its rows", path, target, exc
            )
            continue
        good.append(path)
    return good


def _row_group_rows(table: pa.Table) -> int:
    """Rows per row group so that a group is about ROW_GROUP_BYTES in memory."""
    per_row = table.nbytes / max(1, table.num_rows)
    return max(1, min(table.num_rows, int(ROW_GROUP_BYTES / max(per_row, 1.0))))


def _holds_binary(kind: pa.DataType) -> bool:
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return True
    return any(_holds_binary(kind.field(i).type) for i in range(kind.num_fields))


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """Columns that get Parquet min/max statistics: all but those holding binary
    data. The writer keeps copies of a binary column's min and max values, so the
    FLAC bytes of an hour-long recording would cost several times their size."""
    return [f.name for f in schema if not _holds_binary(f.type)]


def write_part(
    run_dir: str | Path, stage: StageSpec, index: int, table: pa.Table
) -> Path:
    """Write `table` as part `index` of `stage` atomically; return its path."""
    table = table.select(stage.schema.names).cast(stage.schema)
    target = part_path(run_dir, stage, index)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot keeps readers of the folder (pandas, pyarrow) off it.
    tmp = target.with_name(f".{target.name}{TMP_MARKER}{os.getpid()}")
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=_row_group_rows(table),
            write_statistics=_statistics_columns(table.schema),
        )
        disk_full(run_dir, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    failpoint(stage.name)
    return target


def write_rows(
    run_dir: str | Path, stage: StageSpec, index: int, rows: list[dict]
) -> Path:
    """Rows (dicts; missing columns are null) as part `index` of `stage`."""
    return write_part(run_dir, stage, index, pa.Table.from_pylist(rows, stage.schema))


def read_stage(
    run_dir: str | Path, stage: StageSpec, columns: list[str] | None = None
) -> pa.Table:
    """All rows of a stage, checked against its schema version."""
    schema = stage.schema
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    tables = []
    for path in list_parts(run_dir, stage):
        check_part(path, stage)
        tables.append(pq.read_table(path, columns=columns).cast(schema))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def iter_rows(
    part: str | Path, utt_ids: list[str], columns: list[str]
) -> Iterator[dict]:
    """The rows of `part` whose `utt_id` is in `utt_ids`, as dicts of `columns`, in
    part order. One row group is read at a time (parts are written in groups of
    about ROW_GROUP_BYTES), and a row is handed over, not kept: a shard of long
    recordings holds about one group's bytes, not the shard's."""
    wanted = set(utt_ids)
    parquet = pq.ParquetFile(part)
    for group in range(parquet.num_row_groups):
        ids = parquet.read_row_group(group, columns=["utt_id"]).column(0).to_pylist()
        if wanted.isdisjoint(ids):
            continue
        table = parquet.read_row_group(group, columns=columns)
        rows = [row for row in table.to_pylist() if row["utt_id"] in wanted]
        del table  # Arrow's copy and its decompression buffers: give them back now
        pa.default_memory_pool().release_unused()
        rows.reverse()
        while rows:  # popped, so a row's bytes can go once its consumer is done
            yield rows.pop()


def compact_stage(
    run_dir: str | Path, stage: StageSpec, wanted: Mapping[str, str]
) -> int:
    """Drop rows whose (utt_id, key) is not in `wanted`, and duplicates.

    Parts are visited newest first, so of two rows with the same key (a failed row
    and its redo with --retry-failed) the newer one is kept. Each affected part is
    rewritten in place atomically (a part left empty is deleted). Returns the
    number of rows removed.
    """
    removed = 0
    seen: set[str] = set()
    for path in reversed(list_parts(run_dir, stage)):
        table = pq.read_table(path)
        ids = table.column("utt_id").to_pylist()
        keys = table.column(stage.key_column).to_pylist()
        keep = []
        for i, (utt_id, key) in enumerate(zip(ids, keys, strict=True)):
            if wanted.get(utt_id) == key and utt_id not in seen:
                seen.add(utt_id)
                keep.append(i)
        if len(keep) == len(ids):
            continue
        removed += len(ids) - len(keep)
        if keep:
            write_part(run_dir, stage, _part_index(path), table.take(keep))
        else:
            path.unlink()
    return removed


def write_stage_record(run_dir: str | Path, stage: StageSpec, record: dict) -> Path:
    """Write `<stage>/_stage.json` atomically: inputs, parameters, counts, timings."""
    path = stage_dir(run_dir, stage) / RECORD_FILE
    payload = {
        "stage": stage.name,
        "schema_version": stage.version,
        "code_version": CODE_VERSION,
        **record,
    }
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read_stage_record(run_dir: str | Path, stage: StageSpec) -> dict | None:
    path = stage_dir(run_dir, stage) / RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else None
