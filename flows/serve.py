"""Serve the deployments of prefect.yaml from one process, with their schedules.

For users without work pools: `s2s serve` reads the same prefect.yaml that
`prefect deploy` uses, turns each deployment into a served one (same flow,
parameters and cron schedules) and runs them in this process until interrupted.
Schedules need a Prefect server (`prefect server start`, then PREFECT_API_URL).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml


def load_flow(project_dir: Path, entrypoint: str):
    """Import `path/to/file.py:flow_name` relative to the project folder."""
    file_part, name = entrypoint.split(":")
    path = (project_dir / file_part).resolve()
    module_name = ".".join(Path(file_part).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def served_deployments(prefect_yaml: Path, only: list[str] | None = None) -> list:
    """RunnerDeployments for the deployments of `prefect_yaml` (all, or `only`)."""
    config = yaml.safe_load(prefect_yaml.read_text())
    project_dir = prefect_yaml.parent
    out = []
    for spec in config.get("deployments", []):
        if only and spec["name"] not in only:
            continue
        flow = load_flow(project_dir, spec["entrypoint"])
        crons = [s["cron"] for s in spec.get("schedules", []) if s.get("active", True)]
        out.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                parameters=spec.get("parameters") or {},
                cron=crons or None,
            )
        )
    if only and len(out) != len(only):
        known = [d["name"] for d in config.get("deployments", [])]
        raise ValueError(f"unknown deployment in {only}; {prefect_yaml} has {known}")
    return out


def serve_project(prefect_yaml: Path, only: list[str] | None = None) -> None:
    from prefect import serve

    serve(*served_deployments(prefect_yaml, only))
