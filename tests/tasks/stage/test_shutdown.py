"""Ending on time: the item watchdog, and signals that end a process whose thread is
blocked in a system call (a real FIFO nobody writes to)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

import tasks.stage.shutdown
from tasks.stage.shutdown import CHILD_STOP_S, REPORT_S, StopRequested, request_stop
from tasks.stage.watchdog import Stalled, run_watched
from tests.conftest import REPO


@pytest.fixture
def fresh_stop_flag(monkeypatch):
    monkeypatch.setattr(tasks.stage.shutdown, "_stop", threading.Event())


@pytest.fixture
def fifo(tmp_path):
    """A FIFO nobody writes to; opening it for reading blocks. Afterwards a writer
    opens it, which lets any reader still blocked go."""
    path = tmp_path / "fifo.wav"
    os.mkfifo(path)
    yield path
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader left
        pass


def _open_fifo(path):
    def work(progress):
        with open(path, "rb") as fh:
            return fh.read()

    return work


def test_watched_work_returns_or_raises(fresh_stop_flag):
    def slow_but_moving(progress):
        for _ in range(8):
            time.sleep(0.1)
            progress.touch()
        return "done"

    assert run_watched(slow_but_moving, 0.5, "moving", poll_s=0.05) == "done"
    with pytest.raises(ZeroDivisionError):
        run_watched(lambda progress: 1 / 0, 5.0, "broken")


def test_blocked_work_is_abandoned_as_stalled(fresh_stop_flag, fifo):
    started = time.monotonic()
    with pytest.raises(Stalled, match="no progress for 1 s"):
        run_watched(_open_fifo(fifo), 0.5, "fifo", poll_s=0.1)
    assert time.monotonic() - started < 3.0


def test_blocked_work_is_abandoned_when_the_run_stops(fresh_stop_flag, fifo):
    threading.Timer(0.3, request_stop).start()
    started = time.monotonic()
    with pytest.raises(StopRequested):
        run_watched(_open_fifo(fifo), 60.0, "fifo", poll_s=0.1)
    assert time.monotonic() - started < 3.0


# A process that holds a child process and a thread pool whose thread is blocked
# in open() of a FIFO, as Prefect's task runner would be: leaving the pool waits
# for that thread, forever.
BLOCKED = """
import subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from tasks.stage.shutdown import stop_on_signals

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with ThreadPoolExecutor(1) as pool, stop_on_signals(grace_s=float(sys.argv[2])):
    reading = pool.submit(open, sys.argv[1], "rb")
    print(child.pid, flush=True)
    reading.result()
"""


def _start_blocked(fifo, grace_s: float):
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKED, str(fifo), str(grace_s)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = psutil.Process(int(proc.stdout.readline()))
    deadline = time.monotonic() + 30
    while not any(  # wait until the reader thread really is blocked in open()
        _wchan(proc.pid, t.id) in ("wait_for_partner", "fifo_open")
        for t in psutil.Process(proc.pid).threads()
    ):
        assert time.monotonic() < deadline, "the reader never blocked"
        time.sleep(0.05)
    return proc, child


def _wchan(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/wchan") as fh:
            return fh.read()
    except OSError:
        return ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_a_blocked_process_after_the_grace(fifo, sig):
    grace = 2.0
    proc, child = _start_blocked(fifo, grace)
    sent = time.monotonic()
    proc.send_signal(sig)
    rc = proc.wait(timeout=grace + CHILD_STOP_S + 10)
    took = time.monotonic() - sent
    assert rc == 128 + sig, proc.stderr.read()
    assert grace <= took < grace + REPORT_S + CHILD_STOP_S + 2
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    err = proc.stderr.read()
    assert f"{sig.name}: stopping" in err and "ending the process now" in err


def test_second_signal_ends_at_once(fifo):
    proc, child = _start_blocked(fifo, 120.0)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=CHILD_STOP_S + 10) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < CHILD_STOP_S + 1
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
