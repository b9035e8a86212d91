"""Fault injection for the crash tests (inert unless the variable is set)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

FAILPOINT_ENV = "S2S_FAILPOINT_KILL"
DISK_BYTES_ENV = "S2S_FAILPOINT_DISK_BYTES"
_parts_written: dict[str, int] = {}


def failpoint(stage: str) -> None:
    """With S2S_FAILPOINT_KILL="STAGE:N" in the environment, the process SIGKILLs
    itself right after writing its Nth part of STAGE, as a machine failure would
    stop it (no cleanup, no exception handlers)."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != stage:
        return
    _parts_written[stage] = _parts_written.get(stage, 0) + 1
    if _parts_written[stage] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def disk_full(run_dir: str | Path, written: Path) -> None:
    """With S2S_FAILPOINT_DISK_BYTES=N in the environment, RUN_DIR stands on a disk
    of N bytes: once `written` (a part's temporary file, still on disk) takes the
    folder's files past N, the write fails with ENOSPC as on a full disk. Lets the
    full-disk tests run where no small file system can be mounted."""
    limit = os.environ.get(DISK_BYTES_ENV)
    if not limit:
        return
    used = 0
    for path in Path(run_dir).rglob("*"):
        try:
            used += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:  # another shard's file, renamed or deleted
            continue
    if used > int(limit):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(written))
