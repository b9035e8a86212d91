"""Ending a run on time: a stop flag and signal handling with a hard deadline
(the watchdog for one item of work is `tasks.stage.watchdog`).

The first SIGTERM or SIGINT inside `stop_on_signals` sets the stop flag (shard
loops start no new item, `run_shards` no new shard) and arms a deadline. Inside a
Prefect flow run the SIGTERM handler stays Prefect's own, which raises
`TerminationSignal` in the main thread: the flow run is marked crashed (or
cancelled, when Prefect's runner sent the signal) and the run lock is released on
the way out. Parts are written atomically, so whatever is in flight when the
process ends leaves no half-written data.

Python cannot stop a thread that is blocked in a system call (an `open()` of a
FIFO nobody writes to, a read from a hung network mount); Prefect's thread pool
waits for such a thread on its way out, forever, before it records the crash. The
deadline is what bounds that: `STOP_GRACE_S` after the first signal the flow run is
reported crashed (unless Prefect's runner is cancelling it), the process stops its
child processes (the temporary Prefect API server, Dask workers) and exits,
whatever its threads are doing: all within `TERMINATION_BOUND_S`. A second signal
ends the process at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

# A run ends within TERMINATION_BOUND_S of its first SIGTERM/SIGINT: the orderly
# path gets STOP_GRACE_S; then reporting the flow run crashed takes at most
# REPORT_S and stopping child processes at most CHILD_STOP_S more.
TERMINATION_BOUND_S = 30.0
STOP_GRACE_S = 24.0
REPORT_S = 2.0
CHILD_STOP_S = 3.0
assert STOP_GRACE_S + REPORT_S + CHILD_STOP_S <= TERMINATION_BOUND_S
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_stop = threading.Event()
_deadline_lock = threading.Lock()
_deadline: threading.Thread | None = None


class StopRequested(RuntimeError):
    """Raised by work loops that abandon their work because the run is stopping."""


def stop_requested() -> bool:
    return _stop.is_set()


def request_stop() -> None:
    _stop.set()


def _stop_children(timeout_s: float = CHILD_STOP_S) -> None:
    """Terminate this process's children (then kill what is left after timeout_s):
    the temporary Prefect API server, Dask's worker processes."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def end_process_now(code: int) -> NoReturn:
    """Stop the child processes and exit with `code`, without waiting for threads
    or running exit handlers (a blocked thread would make either wait forever)."""
    _stop_children()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _flow_run_id():
    """The id of the Prefect flow run this thread is in, or None."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        return ctx.flow_run.id if ctx and ctx.flow_run else None
    except Exception:  # noqa: BLE001 - no Prefect, no flow run: nothing to report
        return None


def _report_crashed(flow_run_id, reason: str, timeout_s: float = REPORT_S) -> None:
    """Mark the flow run crashed, as Prefect does when it gets to, unless Prefect's
    runner is cancelling it (the runner marks it cancelled once the process is
    gone). Gives up after `timeout_s`: the API may be what is stuck."""

    def report() -> None:
        from prefect._internal import control_listener
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        if control_listener.get_intent() is not None:
            return
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)

    def guarded() -> None:
        with contextlib.suppress(Exception):
            report()

    # in this context: the API the run reports to can be a setting of the caller's
    # context (flows.api_server), which a new thread would not see
    context = contextvars.copy_context()
    reporter = threading.Thread(
        target=context.run, args=(guarded,), name="s2s-report-crash", daemon=True
    )
    reporter.start()
    reporter.join(timeout_s)


def _arm_deadline(grace_s: float, signum: int) -> None:
    global _deadline
    with _deadline_lock:
        if _deadline is not None:
            return
        flow_run_id = _flow_run_id()

        def expire() -> None:
            time.sleep(grace_s)
            print(
                f"s2s: still running {grace_s:.0f} s after the stop signal; "
                "ending the process now",
                file=sys.stderr,
            )
            if flow_run_id is not None:
                reason = (
                    f"Stopped by {signal.Signals(signum).name}; work still in "
                    f"flight after {grace_s:.0f} s was abandoned"
                )
                _report_crashed(flow_run_id, reason)
            end_process_now(128 + signum)

        context = contextvars.copy_context()  # the run's Prefect settings
        _deadline = threading.Thread(
            target=context.run, args=(expire,), name="s2s-stop-deadline"
        )
        _deadline.daemon = True
        _deadline.start()


def _exit_at_once(signum: int, frame) -> None:
    end_process_now(128 + signum)


def _begin_stop(signum: int, grace_s: float) -> None:
    """The first signal: stop starting work, arm the deadline, say so."""
    _stop.set()
    _arm_deadline(grace_s, signum)
    with contextlib.suppress(Exception):  # stderr may be closed or busy
        print(
            f"s2s: {signal.Signals(signum).name}: stopping (no new work is started; "
            f"the process ends within {grace_s + REPORT_S + CHILD_STOP_S:.0f} s; a "
            "second signal ends it at once). Rerun the same command to resume.",
            file=sys.stderr,
        )


def _signal_of(exc: BaseException) -> int | None:
    """The signal behind an exception that unwinds a run, if it is one."""
    from prefect.exceptions import TerminationSignal

    if isinstance(exc, TerminationSignal):
        return exc.signal
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    return None


def _prefect_owns_sigterm() -> bool:
    from prefect.utilities.engine import is_prefect_sigterm_handler_installed

    return is_prefect_sigterm_handler_installed()


@contextlib.contextmanager
def stop_on_signals(grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """Within: the first SIGTERM/SIGINT stops the run within `grace_s` (see the
    module docstring), a second one ends the process at once; so do signals after
    the context is left because of a stop. Otherwise the handlers that were there
    before are restored. A no-op outside the main thread, where Python cannot
    install signal handlers.

    Inside a Prefect flow run, Prefect's own SIGTERM handler stays installed: its
    runner only cancels a run (rather than crash it) while that handler is in
    place. Its `TerminationSignal` starts the stop as it unwinds this context.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.clear()
    ours = [signal.SIGINT]
    if not _prefect_owns_sigterm():
        ours.append(signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in ours}

    def on_signal(signum: int, frame) -> None:
        before = previous[signum]
        if before is signal.SIG_IGN:
            return
        if _stop.is_set():
            _exit_at_once(signum, frame)
        _begin_stop(signum, grace_s)
        if callable(before) and before is not _exit_at_once:
            before(signum, frame)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for sig in ours:
        signal.signal(sig, on_signal)
    try:
        yield
    except BaseException as exc:
        signum = _signal_of(exc)
        if signum is not None and not _stop.is_set():
            _begin_stop(signum, grace_s)
        raise
    finally:
        for sig in HANDLED_SIGNALS:
            if _stop.is_set():
                signal.signal(sig, _exit_at_once)
            elif sig in previous:
                signal.signal(sig, previous[sig])


def exit_on_signals() -> None:
    """For a command line outside any run: SIGTERM/SIGINT stop the child processes
    and exit at once (with 128 + the signal number). Inside a flow,
    `stop_on_signals` takes over; when Prefect re-sends SIGTERM after marking the
    run crashed, this is what ends the process."""
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, _exit_at_once)
