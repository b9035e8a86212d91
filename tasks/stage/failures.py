"""Failure isolation: one bad item fails only itself, never its shard."""

from __future__ import annotations

from collections.abc import Callable


def run_isolating_failures(run: Callable[[list], list], items: list) -> list:
    """``run(items)``, one result per item. If the batch raises, each item is run
    alone, and one that still raises gets its exception as its result: one bad item
    fails only itself."""
    try:
        return run(items)
    except Exception:  # noqa: BLE001 - isolate the failing item below
        out = []
        for item in items:
            try:
                out.extend(run([item]))
            except Exception as exc:  # noqa: BLE001 - becomes that item's result
                out.append(exc)
        return out
