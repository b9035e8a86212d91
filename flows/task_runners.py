"""Task runners chosen at run time: local threads (default) or a Dask cluster.

With Dask, every worker process must talk to the same Prefect API, or each starts
an ephemeral server of its own: the command's own server (`flows.api_server`)
exports its URL before the cluster's worker processes are spawned, so they inherit
it.
"""

from __future__ import annotations

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
