"""Flow `export-run`: mirror a run folder to object storage (any fsspec URI).

CLI: `s2s export RUN_DIR DEST_URI`, or `s2s transcribe ... --export-to DEST_URI` to
export at the end of a run. See `tasks/export.py` for what is copied and how a
rerun copies only what changed.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from tasks.stage import RunLock
from tasks.stage.export import export_run as _export
from tasks.stage.shutdown import stop_on_signals


@task(name="export-run-folder", cache_policy=NONE, retries=2, retry_delay_seconds=5)
def export_task(run_dir: str, dest: str) -> dict:
    """One task: transient storage errors retry the whole (incremental) copy."""
    return _export(run_dir, dest)


@flow(name="export-run", log_prints=False)
def export_run(run_dir: str, dest: str) -> dict:
    """Copy RUN_DIR's parts, stage records and report to `dest`; return counts."""
    with stop_on_signals(), RunLock(run_dir):  # not while a run writes the folder
        return export_task(run_dir, dest)
