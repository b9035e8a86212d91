"""A watchdog for one item of work: it fails the item, not the run, when the item
stops making progress (a read blocked on a hung mount, a decoder in a loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tasks.stage.shutdown import StopRequested, stop_requested

T = TypeVar("T")


class Stalled(RuntimeError):
    """An item made no progress for longer than its watchdog allows."""


class Progress:
    """When the watched work last moved on; the work calls `touch()` as it goes."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()


def run_watched(
    work: Callable[[Progress], T], stall_s: float, name: str, poll_s: float = 1.0
) -> T:
    """`work(progress)` in a daemon thread of its own; its result, or its exception.

    Raises `Stalled` when the work has not touched `progress` for `stall_s`
    seconds, and `StopRequested` when the run is stopping. The thread is then left
    behind: Python cannot end a thread blocked in a system call, but as a daemon it
    keeps neither the shard nor the process from finishing.
    """
    progress = Progress()
    outcome: dict = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = work(progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"s2s-item {name}", daemon=True).start()
    while not done.wait(min(poll_s, stall_s)):
        if stop_requested():
            raise StopRequested(f"run stopping; {name} abandoned")
        idle = time.monotonic() - progress.last
        if idle > stall_s:
            raise Stalled(f"no progress for {idle:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
