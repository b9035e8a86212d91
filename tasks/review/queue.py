"""The review queue: the items of one or more runs that are worth a human ear,
most suspicious first, with what a reviewer needs to judge each.

A transcription item shows the reference (corrected, when a reviewer corrected
it), the hypothesis, the word diff, segments and word timings; a synthesized
item shows the text asked for and what the round-trip ASR heard. Audio is read
from the run's own Parquet (`item_audio`), addressed by utt_id only.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from pathlib import Path

import pyarrow.parquet as pq

from tasks.codecs import decode_flac
from tasks.metrics import normalize_text
from tasks.review.reviews import latest_reviews
from tasks.stage import StageSpec, list_parts, read_stage

# A synthesized item whose round trip loses at least this share of words failed.
ROUND_TRIP_FAIL_WER = 0.5
EXPORT_COLUMNS = (
    "run", "kind", "utt_id", "decision", "flags", "wer", "confidence",
    "reference", "hypothesis",
)  # fmt: skip


def _stages():
    """The stages a queue reads (imported here: they bring the models' code)."""
    from tasks.asr.evaluation import EVALUATION
    from tasks.asr.ingest import INGEST
    from tasks.asr.transcripts import TRANSCRIPTS
    from tasks.tts.audio import AUDIO
    from tasks.tts.evaluation import TTS_EVALUATION
    from tasks.tts.mels import MELS

    return INGEST, TRANSCRIPTS, EVALUATION, AUDIO, TTS_EVALUATION, MELS


def review_kind(run_dir: str | Path) -> str | None:
    """'asr' for a transcription run, 'tts' for a TTS dataset run, else None."""
    ingest, transcripts, _, _, tts_eval, _ = _stages()
    if list_parts(run_dir, transcripts) or list_parts(run_dir, ingest):
        return "asr"
    if list_parts(run_dir, tts_eval):
        return "tts"
    return None


def word_diff(reference: str, hypothesis: str) -> list[dict]:
    """Word-level alignment of two texts: [{op, ref, hyp}] with op one of equal,
    replace, delete (reference words missing), insert (extra words). Words are
    compared lowercased without punctuation, and shown as written."""
    ref, hyp = (reference or "").split(), (hypothesis or "").split()
    key = lambda words: [normalize_text(w, "basic") for w in words]  # noqa: E731
    matcher = difflib.SequenceMatcher(None, key(ref), key(hyp), autojunk=False)
    return [
        {"op": op, "ref": " ".join(ref[i1:i2]), "hyp": " ".join(hyp[j1:j2])}
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
    ]


def _number(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _rows_with_time(run_dir, stage: StageSpec, columns: list[str]) -> dict:
    """utt_id -> row (a dict of `columns`) with `time`: when its part was written."""
    rows = {}
    for part in list_parts(run_dir, stage):
        mtime = part.stat().st_mtime
        for row in pq.read_table(part, columns=columns).to_pylist():
            rows[row["utt_id"]] = {**row, "time": mtime}
    return rows


def asr_items(run_dir: str | Path) -> list[dict]:
    ingest, transcripts, evaluation, *_ = _stages()
    refs = read_stage(run_dir, ingest, ["utt_id", "reference", "duration_s"])
    cols = ["utt_id", "text", "segments", "words", "avg_logprob", "status", "error"]
    hyps = _rows_with_time(run_dir, transcripts, cols)
    scores = {}
    if list_parts(run_dir, evaluation):
        ev = read_stage(run_dir, evaluation, ["utt_id", "wer", "flags"])
        scores = {r["utt_id"]: r for r in ev.to_pylist()}
    reviews = latest_reviews(run_dir, "asr")
    items = []
    for ref in refs.to_pylist():
        utt_id = ref["utt_id"]
        hyp = hyps.get(utt_id, {})
        review = reviews.get(utt_id)
        reference = ref["reference"]
        if review is not None and review["decision"] == "correct":
            reference = review["text"]
        text = hyp.get("text") or ""
        score = scores.get(utt_id, {})
        items.append(
            {
                "kind": "asr",
                "utt_id": utt_id,
                "reference": reference,
                "original_reference": ref["reference"],
                "hypothesis": text,
                "diff": word_diff(reference or "", text),
                "wer": _number(score.get("wer")),
                "confidence": _number(hyp.get("avg_logprob")),
                "flags": list(score.get("flags") or []),
                "segments": [
                    {k: s[k] for k in ("start_s", "end_s", "text", "flag")}
                    for s in hyp.get("segments") or []
                ],
                "words": hyp.get("words") or [],
                "duration_s": ref["duration_s"],
                "seed": None,
                "error": hyp.get("error"),
                "time": hyp.get("time", 0.0),
                "decision": review["decision"] if review else None,
            }
        )
    return items


def tts_items(run_dir: str | Path) -> list[dict]:
    *_, tts_eval, mels = _stages()
    cols = ["utt_id", "text", "hypothesis", "wer", "duration_s", "duration_flag"]
    rows = _rows_with_time(run_dir, tts_eval, [*cols, "status", "error"])
    mel = read_stage(run_dir, mels, ["utt_id", "seed", "cut_short", "hit_max_length"])
    mel = {r["utt_id"]: r for r in mel.to_pylist()}
    reviews = latest_reviews(run_dir, "tts")
    items = []
    for utt_id, row in rows.items():
        m = mel.get(utt_id, {})
        flags = [row["duration_flag"]] if row["duration_flag"] else []
        flags += [f for f in ("cut_short", "hit_max_length") if m.get(f)]
        wer = _number(row["wer"])
        if row["status"] != "ok" or (wer is not None and wer >= ROUND_TRIP_FAIL_WER):
            flags.append("round_trip_failed")
        review = reviews.get(utt_id)
        items.append(
            {
                "kind": "tts",
                "utt_id": utt_id,
                "reference": row["text"],
                "original_reference": row["text"],
                "hypothesis": row["hypothesis"] or "",
                "diff": word_diff(row["text"] or "", row["hypothesis"] or ""),
                "wer": wer,
                "confidence": None,
                "flags": flags,
                "segments": [],
                "words": [],
                "duration_s": row["duration_s"],
                "seed": m.get("seed"),
                "error": row["error"],
                "time": row["time"],
                "decision": review["decision"] if review else None,
            }
        )
    return items


def priority(item: dict) -> tuple:
    """Sort key, most worth a listen first: undecided, flagged, highest WER,
    lowest confidence, newest."""
    wer, conf = item["wer"], item["confidence"]
    return (
        item["decision"] is not None,
        not item["flags"],
        -(wer if wer is not None else -1.0),
        conf if conf is not None else math.inf,
        -item["time"],
        item["utt_id"],
    )


def queue_items(run_dirs: list[str]) -> list[dict]:
    """Every item of the runs, most worth a listen first; each item names its run
    by index (`run`) into `run_dirs`."""
    items = []
    for index, run_dir in enumerate(run_dirs):
        kind = review_kind(run_dir)
        if kind is None:
            raise FileNotFoundError(
                f"{run_dir} holds neither transcripts nor a TTS evaluation"
            )
        found = asr_items(run_dir) if kind == "asr" else tts_items(run_dir)
        items += [{**item, "run": index} for item in found]
    return sorted(items, key=priority)


def _cell(value) -> str:
    return "" if value is None else str(value)


def export_queue_csv(items: list[dict], run_dirs: list[str]) -> str:
    """The queue as CSV text (EXPORT_COLUMNS); flags joined with '|'."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for item in items:
        values = {
            **item,
            "run": run_dirs[item["run"]],
            "flags": "|".join(item["flags"]),
            "decision": item["decision"] or "",
        }
        writer.writerow([_cell(values[c]) for c in EXPORT_COLUMNS])
    return out.getvalue()


def item_audio(run_dir: str | Path, kind: str, utt_id: str):
    """(float32 samples, sample rate) of one item, from the run's Parquet: the
    ingested audio (asr) or the synthesized audio (tts). KeyError if absent."""
    ingest, _, _, audio, _, _ = _stages()
    stage = ingest if kind == "asr" else audio
    for part in list_parts(run_dir, stage):
        table = pq.read_table(part, columns=["utt_id"], filters=None)
        ids = table.column("utt_id").to_pylist()
        if utt_id in ids:
            row = pq.read_table(part, columns=["audio"]).slice(ids.index(utt_id), 1)
            return decode_flac(row.column("audio")[0].as_py()["bytes"])
    raise KeyError(utt_id)
