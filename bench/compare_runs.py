"""Compare two run folders stage by stage: are their Parquet rows the same?

    python bench/compare_runs.py RUN_A RUN_B [--ignore COLUMN ...]

Reads every `<stage>/part-*.parquet` of both folders directly with pyarrow (no
schema-version check, so a folder written by an older layout can be compared with a
current one), sorts the rows by `utt_id` and compares them column by column. Timing
columns (wall-clock shares) are left out. A mel matrix compares as its values,
whatever its encoding (a float16 blob with its shape columns, or the
`list<list<float16>>` layout of `mels` schema version 1). The `_summary.json` files
compare without their timing fields. Prints one line per stage and exits 1 when
anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

# Wall-clock shares differ from run to run; everything else must match.
TIMING_COLUMNS = {"decode_seconds", "synth_seconds", "vocode_seconds"}
TIMING_SUMMARY_KEYS = {
    "synthesis_seconds",
    "synthesis_rtfx",
    "run_info",
    "wall_seconds",
}
# (blob column, the shape columns in memory order) of each stage storing a mel
MEL_SHAPES = {
    "features": ("n_mels", "n_frames"),
    "mels": ("n_frames", "n_mels"),
}


def _rows(folder: Path) -> dict[str, dict]:
    parts = sorted(folder.glob("part-*.parquet"))
    rows: dict[str, dict] = {}
    for part in parts:
        for row in pq.read_table(part).to_pylist():
            key = row.get("utt_id")
            assert key not in rows, f"{folder}: utt_id {key!r} twice"
            rows[key] = row
    return rows


def _mel(value, row: dict, shape: tuple[str, str]) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        mat = np.frombuffer(value, dtype="<f2")
        return mat.reshape(int(row[shape[0]]), int(row[shape[1]]))
    return np.asarray(value, dtype=np.float16)  # list<list<float16>>


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if a is None or b is None:
            return a is b
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a == b


def compare_stage(stage: str, a: Path, b: Path, ignore: set[str]) -> list[str]:
    """Differences between the rows of one stage in two run folders."""
    rows_a, rows_b = _rows(a / stage), _rows(b / stage)
    problems = []
    if set(rows_a) != set(rows_b):
        only_a, only_b = set(rows_a) - set(rows_b), set(rows_b) - set(rows_a)
        problems.append(
            f"utt_ids differ: only in A {sorted(only_a)[:5]}, "
            f"only in B {sorted(only_b)[:5]}"
        )
    for utt_id in sorted(set(rows_a) & set(rows_b)):
        ra, rb = rows_a[utt_id], rows_b[utt_id]
        if set(ra) != set(rb):
            problems.append(f"{utt_id}: columns {sorted(set(ra) ^ set(rb))}")
        for column in sorted(set(ra) & set(rb) - ignore - TIMING_COLUMNS):
            va, vb = ra[column], rb[column]
            if stage in MEL_SHAPES and column == "log_mel":
                va = _mel(va, ra, MEL_SHAPES[stage])
                vb = _mel(vb, rb, MEL_SHAPES[stage])
            if not _same(va, vb):
                problems.append(f"{utt_id}.{column}: {str(va)[:80]} != {str(vb)[:80]}")
    return problems


def compare_summary(path_a: Path, path_b: Path, ignore: set[str]) -> list[str]:
    if not path_a.exists() and not path_b.exists():
        return []
    a, b = (json.loads(p.read_text()) for p in (path_a, path_b))
    keys = (set(a) | set(b)) - TIMING_SUMMARY_KEYS - ignore
    return [
        f"{path_a.name}[{k}]: {a.get(k)} != {b.get(k)}"
        for k in sorted(keys)
        if a.get(k) != b.get(k)
    ]


def compare_runs(a: Path, b: Path, ignore: set[str]) -> dict[str, list[str]]:
    """{stage: differences} for every stage folder holding parts in either run."""
    stages = sorted(
        {p.parent.name for run in (a, b) for p in run.glob("*/part-*.parquet")}
    )
    out = {s: compare_stage(s, a, b, ignore) for s in stages}
    for stage in stages:
        summary = Path(stage) / "_summary.json"
        out[stage] += compare_summary(a / summary, b / summary, ignore)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="COLUMN",
        help="also leave out this column (and _summary.json key); repeatable",
    )
    args = parser.parse_args(argv)
    result = compare_runs(args.run_a, args.run_b, set(args.ignore))
    for stage, problems in result.items():
        n_rows = len(_rows(args.run_a / stage))
        print(
            f"{stage:<15} {n_rows:>4} rows  "
            f"{'same' if not problems else f'{len(problems)} DIFFERENCES'}"
        )
        for problem in problems[:20]:
            print(f"    {problem}")
    return 1 if any(result.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
