"""Fault injection for the crash tests (inert unless the variable is set)."""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "S2S_FAILPOINT_KILL"
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
