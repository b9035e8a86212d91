"""Task runners chosen at run time: local threads (default) or a Dask cluster.

With Dask, every worker process must talk to the same Prefect API, or each starts
an ephemeral server of its own. When no PREFECT_API_URL is set, `task_runner_env`
starts one local server for the run and exports its URL before the cluster's
worker processes are spawned, so they inherit it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

TASK_RUNNERS = ("local", "dask")


def build_task_runner(
    kind: str = "local", dask_address: str | None = None, n_workers: int = 2
):
    """None for the flow's own default (threads), else a DaskTaskRunner.

    `dask_address` (tcp://host:port) uses an existing cluster; otherwise a
    LocalCluster of `n_workers` single-threaded processes is started. Local GPU
    workers declare one `GPU` resource each, which GPU stages ask for.
    """
    if kind not in TASK_RUNNERS:
        raise ValueError(f"task runner must be one of {TASK_RUNNERS}, not {kind!r}")
    if kind == "local":
        return None
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    import torch

    worker_kwargs: dict = {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
    }
    if torch.cuda.is_available():
        worker_kwargs["resources"] = {"GPU": 1}
    return DaskTaskRunner(cluster_kwargs=worker_kwargs)


@contextlib.contextmanager
def task_runner_env(kind: str) -> Iterator[None]:
    """Make sure all Dask workers share one Prefect API for the run."""
    if kind != "dask" or os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    timeout = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    server.start(timeout=int(timeout))
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
