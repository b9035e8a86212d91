"""The run's own Prefect API server, started early.

Without PREFECT_API_URL a command needs a local Prefect API for its flow run.
Prefect would start one itself when the flow begins, after the command has
imported torch and Prefect (about 4 s) - and the server takes about as long
again to come up. `LocalApiServer` starts it in a background thread as soon as
the command line is parsed, so that the server's start overlaps the imports, and
hands its URL to the flow (and to Dask workers, which must all report to the same
API). With PREFECT_API_URL set (a `prefect server start`, `s2s serve`, a worker),
nothing is started and that server is used.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class LocalApiServer:
    """Started by `start_early`; ``with server:`` waits for it and points Prefect
    at it for the flow run; `close` stops it (whether or not it was used)."""

    def __init__(self) -> None:
        self.server = None
        self.error: BaseException | None = None
        self._settings = None
        self._thread = threading.Thread(
            target=self._start, name="s2s-prefect-api", daemon=True
        )

    @classmethod
    def start_early(cls) -> LocalApiServer | None:
        """A server starting in the background, or None when PREFECT_API_URL is
        set."""
        if os.environ.get("PREFECT_API_URL"):
            return None
        server = cls()
        server._thread.start()
        return server

    def _start(self) -> None:
        try:
            from prefect.server.api.server import SubprocessASGIServer

            # a port of our own: SubprocessASGIServer keeps one instance per port,
            # and port None is Prefect's own ephemeral server (or a test harness's)
            server = SubprocessASGIServer(port=_free_port())
            server.start(timeout=int(os.environ.get(STARTUP_TIMEOUT_ENV, "90")))
            self.server = server
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread
            self.error = exc

    def __enter__(self) -> str:
        """Wait for the server; export its URL for this process and its children."""
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(
                f"could not start a local Prefect API server: {self.error}"
            ) from self.error
        from prefect.settings import PREFECT_API_URL, temporary_settings

        os.environ["PREFECT_API_URL"] = self.server.api_url
        self._settings = temporary_settings(
            updates={PREFECT_API_URL: self.server.api_url}
        )
        self._settings.__enter__()
        return self.server.api_url

    def __exit__(self, *exc) -> None:
        if self._settings is not None:
            self._settings.__exit__(*exc)
            self._settings = None
        os.environ.pop("PREFECT_API_URL", None)

    def close(self) -> None:
        """Stop the server (waiting for its start to finish first, so that no
        server process is left behind)."""
        self._thread.join()
        if self.server is not None:
            _send_pending_logs()
            self.server.stop()
            self.server = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _send_pending_logs(timeout_s: float = 5.0) -> None:
    """Let Prefect's log worker deliver what the run logged while the server is
    still there (it would fail at exit, with a message, after the server stops)."""
    import sys

    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.logging.handlers import APILogWorker

    try:
        APILogWorker.drain_all(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - logs are best effort; the run is done
        pass


@contextlib.contextmanager
def flow_api(server: LocalApiServer | None) -> Iterator[None]:
    """The API a command's flow run reports to: `server` once it is up, or the
    configured PREFECT_API_URL when `server` is None."""
    if server is None:
        yield
        return
    with server:
        yield
