"""The stage contract and its machinery, written once for every stage.

A stage module declares a `StageSpec` (name, columns, upstream, key, compute); the
rest is here, one responsibility per module:

    spec.py        StageSpec, the row status columns, StageError
    parts.py       part I/O: atomic writes, schema checks, quarantine, compaction,
                   <stage>/_stage.json
    keys.py        fingerprints of what a row was computed from
    plan.py        what a run still has to do, in shards
    runner.py      run_stage: plan -> Prefect shard tasks -> compact -> record
    lock.py        one run at a time per run folder
    failures.py    one bad item fails only itself
    memory.py      freed memory back to the OS between shards
    failpoints.py  fault injection for the crash tests
    shutdown.py    a stop signal ends the run in bounded time
    watchdog.py    an item that stops making progress fails alone
    export.py      mirror a run folder to object storage

The names below are the contract a stage module uses; `tasks.stage.runner` (which
imports Prefect) is imported where stages are run.
"""

from tasks.stage.failures import run_isolating_failures
from tasks.stage.keys import file_sha256, fingerprint
from tasks.stage.lock import RunLock
from tasks.stage.parts import (
    iter_rows,
    list_parts,
    read_stage,
    read_stage_record,
    stage_dir,
    write_part,
    write_rows,
    write_stage_record,
)
from tasks.stage.spec import ROW_STATUS, StageError, StageSpec, error_text, failed_row

__all__ = [
    "ROW_STATUS",
    "RunLock",
    "StageError",
    "StageSpec",
    "error_text",
    "failed_row",
    "file_sha256",
    "fingerprint",
    "iter_rows",
    "list_parts",
    "read_stage",
    "read_stage_record",
    "run_isolating_failures",
    "stage_dir",
    "write_part",
    "write_rows",
    "write_stage_record",
]
