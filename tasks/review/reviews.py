"""Stage `reviews`: human decisions on a run's items, appended, never rewritten.

Each write is a new part, `RUN_DIR/reviews/part-NNNNN.parquet`: the rows go to a
temporary file, which is then hard-linked to the next free part name. A link
fails when the name exists, so two reviewers writing at once each get their own
part (the loser tries the next number) and nothing is overwritten or lost. The
latest decision per item wins (`tasks.review.decisions.latest_decisions`); the
earlier ones stay as history.

Unlike the computed stages, rows here have no `input_key`: a decision is not
derived from anything, and no rerun removes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.review.decisions import latest_decisions
from tasks.stage import StageSpec, read_stage
from tasks.stage.parts import (
    TMP_MARKER,
    list_parts,
    next_part_index,
    part_path,
    stage_dir,
)

REVIEWS = StageSpec(
    name="reviews",
    version=1,
    columns=(
        ("run", pa.string()),  # the run folder's name when the decision was made
        ("kind", pa.string()),  # asr | tts
        ("utt_id", pa.string()),
        ("decision", pa.string()),  # accept | correct | reject
        ("text", pa.string()),  # the corrected reference ('correct' only)
        ("previous_text", pa.string()),  # the reference (asr) or text (tts) judged
        ("reviewer", pa.string()),
        ("seed", pa.int64()),  # tts: sampling seed of the audio judged
        ("time", pa.string()),  # ISO 8601, UTC, microseconds
    ),
)
MAX_LINK_TRIES = 1000


def append_reviews(run_dir: str | Path, rows: list[dict]) -> Path:
    """Write `rows` (see `decision_row`) as a new part of RUN_DIR/reviews/;
    return its path. Never replaces an existing part."""
    if not rows:
        raise ValueError("no decisions to write")
    table = pa.Table.from_pylist(rows, REVIEWS.schema)
    folder = stage_dir(run_dir, REVIEWS)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".reviews{TMP_MARKER}{os.getpid()}-{id(rows)}"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        index = next_part_index(run_dir, REVIEWS)
        for _ in range(MAX_LINK_TRIES):
            target = part_path(run_dir, REVIEWS, index)
            try:
                os.link(tmp, target)  # fails if the name is taken: never overwrites
                return target
            except FileExistsError:
                index += 1
        raise RuntimeError(f"no free part name in {folder}")
    finally:
        tmp.unlink(missing_ok=True)


def read_reviews(run_dir: str | Path) -> list[dict]:
    """Every decision of RUN_DIR (history included), oldest part first."""
    if not list_parts(run_dir, REVIEWS):
        return []
    return read_stage(run_dir, REVIEWS).to_pylist()


def latest_reviews(run_dir: str | Path, kind: str | None = None) -> dict[str, dict]:
    """utt_id -> the decision that counts, for items of `kind` (all when None)."""
    return latest_decisions(read_reviews(run_dir), kind)
