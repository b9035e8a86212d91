"""The run lock: one run at a time per run folder."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from tasks.stage.spec import StageError


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
