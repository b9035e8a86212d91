"""Review decisions as data: what a decision is, which one counts, and how a
decisions file (`s2s review RUN --apply FILE`) is read.

Pure functions, no I/O besides the bytes handed in. A decision is one of
DECISIONS; the latest decision per (kind, utt_id) wins and the others stay as
history. `parse_decisions_csv` checks a whole file before anything is written:
one bad line refuses the file.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

DECISIONS = ("accept", "correct", "reject")
KINDS = ("asr", "tts")  # a transcription item, or a synthesized one
CSV_COLUMNS = ("utt_id", "decision", "text")


class DecisionsError(ValueError):
    """A decisions file or a decision that cannot be applied; nothing was written."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_decision(kind: str, decision: str, text: str | None) -> None:
    """Raise DecisionsError when (kind, decision, text) is not a valid decision."""
    if kind not in KINDS:
        raise DecisionsError(f"unknown item kind {kind!r} (one of {', '.join(KINDS)})")
    if decision not in DECISIONS:
        raise DecisionsError(
            f"unknown decision {decision!r} (one of {', '.join(DECISIONS)})"
        )
    if decision == "correct":
        if kind == "tts":
            raise DecisionsError(
                "a synthesized item can be accepted or rejected, not corrected"
            )
        if not (text or "").strip():
            raise DecisionsError("decision 'correct' needs the corrected text")


def decision_row(
    run: str,
    kind: str,
    utt_id: str,
    decision: str,
    text: str | None,
    previous: str | None,
    reviewer: str,
    seed: int | None = None,
    time: str | None = None,
) -> dict:
    """One `reviews` row (checked). `text` is kept only for 'correct'; `seed` is the
    sampling seed of the synthesized audio that was judged (TTS)."""
    check_decision(kind, decision, text)
    return {
        "run": run,
        "kind": kind,
        "utt_id": utt_id,
        "decision": decision,
        "text": text.strip() if decision == "correct" else None,
        "previous_text": previous,
        "reviewer": reviewer,
        "seed": seed,
        "time": time or now_iso(),
    }


def latest_decisions(rows: Iterable[Mapping], kind: str | None = None) -> dict:
    """utt_id -> the latest decision row (by `time`, then by order given) of
    `kind` (all kinds when None). Earlier rows are history, not lost."""
    latest: dict[str, Mapping] = {}
    for row in rows:
        if kind is not None and row["kind"] != kind:
            continue
        held = latest.get(row["utt_id"])
        if held is None or row["time"] >= held["time"]:
            latest[row["utt_id"]] = row
    return latest


def rejected_seeds(rows: Iterable[Mapping]) -> dict[str, set[int]]:
    """utt_id -> seeds of synthesized audio a reviewer ever rejected."""
    out: dict[str, set[int]] = {}
    for row in rows:
        if row["kind"] == "tts" and row["decision"] == "reject":
            if row.get("seed") is not None:
                out.setdefault(row["utt_id"], set()).add(int(row["seed"]))
    return out


def corrected_references(
    references: Mapping[str, str | None], latest: Mapping[str, Mapping]
) -> tuple[dict[str, str | None], set[str]]:
    """References after review, and the utt_ids a reviewer rejected (left out
    of scoring). 'accept' keeps a reference; 'correct' replaces it."""
    refs = dict(references)
    rejected = set()
    for utt_id, row in latest.items():
        if utt_id not in refs:
            continue
        if row["decision"] == "correct":
            refs[utt_id] = row["text"]
        elif row["decision"] == "reject":
            rejected.add(utt_id)
    return refs, rejected


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def parse_decisions_csv(
    data: bytes, known: Mapping[str, str], source: str = "decisions file"
) -> list[dict]:
    """The decisions of a CSV file (columns utt_id, decision, text), checked.

    `known`: utt_id -> kind ('asr' | 'tts') of every item the run holds. Returns
    [{utt_id, kind, decision, text}] in file order. Raises DecisionsError with a
    one-line message naming the line at the first problem: bytes that are not
    UTF-8, a missing column, an unknown utt_id or decision, 'correct' without a
    text, or no decisions at all.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecisionsError(
            f"{source} is not UTF-8 (byte {exc.start}: {exc.reason}); "
            "save it as UTF-8 and try again"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DecisionsError(
            f"{source} lacks column(s) {', '.join(missing)} "
            f"(header must hold {','.join(CSV_COLUMNS)}; found {','.join(header)})"
        )
    reader.fieldnames = header
    out = []
    for line, row in enumerate(reader, start=2):
        utt_id = (row.get("utt_id") or "").strip()
        decision = (row.get("decision") or "").strip().lower()
        value = None if _is_blank(row.get("text")) else row["text"]
        where = f"{source} line {line}"
        if utt_id not in known:
            raise DecisionsError(f"{where}: unknown utt_id {utt_id!r} in this run")
        try:
            check_decision(known[utt_id], decision, value)
        except DecisionsError as exc:
            raise DecisionsError(f"{where} ({utt_id}): {exc}") from None
        kind = known[utt_id]
        out.append(
            {"utt_id": utt_id, "kind": kind, "decision": decision, "text": value}
        )
    if not out:
        raise DecisionsError(f"{source} holds no decisions")
    return out
