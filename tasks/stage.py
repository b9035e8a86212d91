"""The stage contract: how every stage reads, writes and resumes its Parquet parts.

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
- A rerun computes each wanted row's `input_key`; rows whose key already exists are
  skipped. Rows that are no longer wanted (file removed, content or settings
  changed) are dropped by `compact_stage`, which rewrites affected parts atomically.
  After a stage completes, every wanted utterance is present exactly once.
- Part numbers for a run are allocated up front by the caller, so concurrent shard
  tasks never race for a name.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import gc
import hashlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.schemas import SCHEMA_VERSION_KEY, SCHEMAS, STAGE_KEY, schema_version

log = logging.getLogger(__name__)

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
TMP_MARKER = ".tmp-"
QUARANTINE_DIR = "_corrupt"  # <stage>/_corrupt/: unreadable parts moved aside
CODE_VERSION = "0.1.0"


class StageError(RuntimeError):
    """A stage's outputs cannot be used as they are (wrong schema, folder locked)."""


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / stage


def part_path(run_dir: str | Path, stage: str, index: int) -> Path:
    return stage_dir(run_dir, stage) / f"{PART_PREFIX}{index:05d}{PART_SUFFIX}"


def fingerprint(*parts: object) -> str:
    """Stable short hash of JSON-serialisable values (settings, upstream keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@functools.lru_cache(maxsize=32)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a local file; `size` and `mtime_ns` are part of the cache key, so
    a file changed on disk is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def list_parts(run_dir: str | Path, stage: str) -> list[Path]:
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


def next_part_index(run_dir: str | Path, stage: str) -> int:
    parts = list_parts(run_dir, stage)
    if not parts:
        return 0
    return max(int(p.name[len(PART_PREFIX) : -len(PART_SUFFIX)]) for p in parts) + 1


def _check_part(path: Path, stage: str) -> None:
    """Raise if `path` is not a complete part of the current schema of `stage`."""
    meta = pq.read_metadata(path)  # raises on a truncated footer
    schema = meta.schema.to_arrow_schema()
    found_stage = (schema.metadata or {}).get(STAGE_KEY, b"").decode()
    if found_stage != stage:
        raise StageError(f"{path} belongs to stage {found_stage!r}, not {stage!r}")
    want = schema_version(SCHEMAS[stage])
    got = schema_version(schema)
    if got != want:
        raise StageError(
            f"{path} has schema version {got}, this code writes {want}: "
            "use a new run folder or delete the stage folder"
        )


def prepare_stage(run_dir: str | Path, stage: str) -> list[Path]:
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
            _check_part(path, stage)
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


# Shard limits besides the row count: what one task holds in memory at once.
SHARD_MAX_SECONDS = 1800.0  # audio per downstream shard (115 MB as float32)
SHARD_MAX_SOURCE_BYTES = 256 << 20  # source file bytes per ingest shard
ROW_GROUP_BYTES = 32 << 20  # readers hold about one row group in memory


def _row_group_rows(table: pa.Table) -> int:
    """Rows per row group so that a group is about ROW_GROUP_BYTES in memory."""
    per_row = table.nbytes / max(1, table.num_rows)
    return max(1, min(table.num_rows, int(ROW_GROUP_BYTES / max(per_row, 1.0))))


def release_memory() -> None:
    """Give freed heap memory back to the OS after a shard (Linux glibc only).

    Without it glibc keeps the freed pages of every shard's many short-lived
    buffers (decoded audio, FLAC bytes, tensors), and the peak RSS of a long run
    creeps up shard after shard. Measured on 1,000 files (`bench/RESULTS.md`): peak
    1,307 MB without, 1,144 MB with; resident between shards 1,140 vs 750 MB.
    Arrow's own allocator (mimalloc) keeps freed buffers too; they go back as well.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to do
        return
    libc.malloc_trim(0)


def run_isolating_failures(run: Callable[[list], list], items: list) -> list:
    """``run(items)``, one result per item. If the batch raises, each item is run
    alone, and one that still raises gets its exception as its result: one bad item
    fails only itself."""
    try:
        return run(items)
    except Exception:  # noqa: BLE001 - isolate the failing item below
        out = []
        for item in items:
            try:
                out.extend(run([item]))
            except Exception as exc:  # noqa: BLE001 - becomes that item's result
                out.append(exc)
        return out


def _holds_binary(kind: pa.DataType) -> bool:
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return True
    return any(_holds_binary(kind.field(i).type) for i in range(kind.num_fields))


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """Columns that get Parquet min/max statistics: all but those holding binary
    data. The writer keeps copies of a binary column's min and max values, so the
    FLAC bytes of an hour-long recording would cost several times their size."""
    return [f.name for f in schema if not _holds_binary(f.type)]


def write_part(run_dir: str | Path, stage: str, index: int, table: pa.Table) -> Path:
    """Write `table` as part `index` of `stage` atomically; return its path."""
    schema = SCHEMAS[stage]
    table = table.select(schema.names).cast(schema)
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
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _failpoint(stage)
    return target


FAILPOINT_ENV = "S2S_FAILPOINT_KILL"
_parts_written: dict[str, int] = {}


def _failpoint(stage: str) -> None:
    """Fault injection for the crash tests: with S2S_FAILPOINT_KILL="STAGE:N" in the
    environment, the process SIGKILLs itself right after writing its Nth part of
    STAGE, as a machine failure would stop it (no cleanup, no exception handlers)."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != stage:
        return
    _parts_written[stage] = _parts_written.get(stage, 0) + 1
    if _parts_written[stage] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def read_part(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)


def read_stage(
    run_dir: str | Path, stage: str, columns: list[str] | None = None
) -> pa.Table:
    """All rows of a stage, checked against its schema version."""
    parts = list_parts(run_dir, stage)
    schema = SCHEMAS[stage]
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    tables = []
    for path in parts:
        _check_part(path, stage)
        tables.append(pq.read_table(path, columns=columns).cast(schema))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


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


def compact_stage(
    run_dir: str | Path,
    stage: str,
    wanted: Mapping[str, str],
    key_column: str = "input_key",
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
        keys = table.column(key_column).to_pylist()
        keep = []
        for i, (utt_id, key) in enumerate(zip(ids, keys, strict=True)):
            if wanted.get(utt_id) == key and utt_id not in seen:
                seen.add(utt_id)
                keep.append(i)
        if len(keep) == len(ids):
            continue
        removed += len(ids) - len(keep)
        if keep:
            index = int(path.name[len(PART_PREFIX) : -len(PART_SUFFIX)])
            write_part(run_dir, stage, index, table.take(keep))
        else:
            path.unlink()
    return removed


def write_stage_record(run_dir: str | Path, stage: str, record: dict) -> Path:
    """Write `<stage>/_stage.json` atomically: inputs, parameters, counts, timings."""
    path = stage_dir(run_dir, stage) / "_stage.json"
    payload = {
        "stage": stage,
        "schema_version": schema_version(SCHEMAS[stage]) if stage in SCHEMAS else None,
        "code_version": CODE_VERSION,
        **record,
    }
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read_stage_record(run_dir: str | Path, stage: str) -> dict | None:
    path = stage_dir(run_dir, stage) / "_stage.json"
    return json.loads(path.read_text()) if path.exists() else None


class RunLock:
    """An exclusive lock on a run folder, released by the kernel if the process dies.

    `flock` is tied to the open file description, so a crashed or killed run never
    leaves the folder locked; the pid written inside is only for the error message.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / ".lock"
        self._fh = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StageError(
                f"run folder {self.path.parent} is in use by {holder}; wait for it to "
                "finish or use another --out folder"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def is_done(row: ExistingRow | None, key: str, retry_failed: bool) -> bool:
    """Whether an existing row already answers for `key` (failed rows are redone
    only when asked: their inputs are unchanged, so they would fail again)."""
    if row is None or row.input_key != key:
        return False
    return row.status == "ok" or not retry_failed


@dataclass(frozen=True)
class Shard:
    """One unit of work for a downstream stage: some rows of one upstream part."""

    upstream_part: str
    utt_ids: list[str]
    n_items: int


def plan_downstream(
    run_dir: str | Path,
    upstream: str,
    stage: str,
    key_fn,
    shard_size: int,
    retry_failed: bool = False,
    max_shard_seconds: float = SHARD_MAX_SECONDS,
) -> tuple[list[Shard], dict[str, str]]:
    """Which ok rows of `upstream` still need `stage`, grouped into shards of at
    most `shard_size` rows and `max_shard_seconds` of audio (so that a shard of
    long recordings stays as small in memory as one of short clips).

    `key_fn(upstream_input_key) -> str` gives the downstream row's input_key.
    Returns (shards to run, wanted {utt_id: input_key} for `compact_stage`).
    """
    done = existing_rows(prepare_stage(run_dir, stage))
    wanted: dict[str, str] = {}
    shards: list[Shard] = []
    columns = ["utt_id", "input_key", "status"]
    if "duration_s" in SCHEMAS[upstream].names:
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
            key = key_fn(up_key)
            wanted[utt_id] = key
            if not is_done(done.get(utt_id), key, retry_failed):
                todo.append(utt_id)
                todo_s.append(dur or 0.0)
        shards += [
            Shard(str(path), ids, len(ids))
            for ids in chunked_by(todo, todo_s, shard_size, max_shard_seconds)
        ]
    return shards, wanted


def shard_seconds(shards: list[Shard]) -> list[float]:
    """Audio seconds in each shard (from the upstream ingest parts), for progress."""
    durations: dict[str, dict[str, float]] = {}
    out = []
    for shard in shards:
        if shard.upstream_part not in durations:
            cols = pq.read_table(
                shard.upstream_part, columns=["utt_id", "duration_s"]
            ).to_pydict()
            durations[shard.upstream_part] = dict(
                zip(cols["utt_id"], cols["duration_s"], strict=True)
            )
        known = durations[shard.upstream_part]
        out.append(float(sum(known.get(u) or 0.0 for u in shard.utt_ids)))
    return out


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


__all__ = [
    "SCHEMA_VERSION_KEY",
    "ExistingRow",
    "RunLock",
    "StageError",
    "chunked",
    "chunked_by",
    "compact_stage",
    "existing_rows",
    "fingerprint",
    "is_done",
    "plan_downstream",
    "Shard",
    "list_parts",
    "next_part_index",
    "part_path",
    "prepare_stage",
    "read_part",
    "read_stage",
    "read_stage_record",
    "release_memory",
    "stage_dir",
    "write_part",
    "write_stage_record",
]
