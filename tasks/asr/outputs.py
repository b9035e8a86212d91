"""Transcripts in the file formats people use: SRT, WebVTT, TSV, plain text, JSON.

The conventions are openai-whisper's writers', so files drop into the same tools:

``srt``
    numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` (comma before the
    milliseconds, hours always written), a blank line after each cue;
``vtt``
    a ``WEBVTT`` header line and a blank line, then cues ``MM:SS.mmm --> MM:SS.mmm``
    (hours only when there are any);
``tsv``
    a ``start``, ``end``, ``text`` header, times in whole milliseconds;
``txt``
    one segment's text per line;
``json``
    ``{"text", "language", "segments": [...], "words": [...]}`` with every segment
    field of the ``transcripts`` stage (flags included) and, with word timestamps,
    each word's ``start``/``end``/``probability``.

Cue text never contains ``-->`` (written ``->``), and segments without text (a
flagged stretch of speech the transcript leaves out) are not cues; they stay in
the JSON. The input is one row of the ``transcripts`` stage as a dict.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

FORMATS = ("srt", "vtt", "txt", "tsv", "json")


def format_timestamp(seconds: float, always_hours: bool, marker: str) -> str:
    """``[HH:]MM:SS<marker>mmm`` of a non-negative time, rounded to milliseconds."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{marker}{ms:03d}"


def _cues(row: dict) -> list[tuple[float, float, str]]:
    cues = []
    for seg in row.get("segments") or []:
        text = (seg.get("text") or "").strip().replace("-->", "->")
        if text:
            cues.append((float(seg["start_s"]), float(seg["end_s"]), text))
    return cues


def _span(start: float, end: float, always_hours: bool, marker: str) -> str:
    first = format_timestamp(start, always_hours, marker)
    return f"{first} --> {format_timestamp(end, always_hours, marker)}"


def to_srt(row: dict) -> str:
    blocks = []
    for i, (start, end, text) in enumerate(_cues(row), start=1):
        blocks.append(f"{i}\n{_span(start, end, True, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(row: dict) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, text in _cues(row):
        blocks.append(f"{_span(start, end, False, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_tsv(row: dict) -> str:
    lines = ["start\tend\ttext"]
    for start, end, text in _cues(row):
        lines.append(f"{round(1000 * start)}\t{round(1000 * end)}\t{text}")
    return "\n".join(lines) + "\n"


def to_txt(row: dict) -> str:
    return "".join(f"{text}\n" for _, _, text in _cues(row))


def _plain(value):
    """JSON-safe: NaN becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_json(row: dict) -> str:
    segments = [
        {k: _plain(v) for k, v in seg.items()} for seg in (row.get("segments") or [])
    ]
    words = [{k: _plain(v) for k, v in w.items()} for w in (row.get("words") or [])]
    doc = {
        "utt_id": row.get("utt_id"),
        "text": (row.get("text") or "").strip(),
        "language": row.get("language"),
        "duration_s": _plain(row.get("duration_s")),
        "segments": segments,
        "words": words,
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


WRITERS = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "tsv": to_tsv, "json": to_json}
assert tuple(WRITERS) == FORMATS


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"srt,vtt"`` -> ("srt", "vtt"); ``"all"`` -> every format. Raises ValueError
    naming an unknown format."""
    names = (
        FORMATS
        if spec.strip() == "all"
        else tuple(f.strip().lower() for f in spec.split(",") if f.strip())
    )
    unknown = [f for f in names if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"unknown output format {', '.join(unknown)}: choose from "
            f"{', '.join(FORMATS)} or all"
        )
    return tuple(dict.fromkeys(names))


OUTPUTS_DIR = "outputs"  # RUN_DIR/outputs/<format>/<utt_id>.<format>


def output_path(run_dir: str | Path, fmt: str, utt_id: str) -> Path:
    """Where `utt_id`'s file of format `fmt` goes. An utt_id's folders (it may be a
    relative path, "speaker/clip") are kept; parts that could leave the folder
    ("..", empty, absolute) are replaced."""
    parts = [p if p not in ("", ".", "..") else "_" for p in utt_id.split("/")]
    return Path(run_dir, OUTPUTS_DIR, fmt, *parts).with_name(f"{parts[-1]}.{fmt}")


def write_outputs(run_dir: str | Path, formats: tuple[str, ...]) -> dict[str, int]:
    """Write every ok transcript of the run in each format; returns files written
    per format. Each file is written whole (temporary name, then rename), and files
    of utterances the run no longer holds are removed, so the folder always matches
    the `transcripts` stage."""
    from tasks.asr.transcripts import TRANSCRIPTS
    from tasks.stage import read_stage

    table = read_stage(run_dir, TRANSCRIPTS)
    rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    written = {}
    for fmt in formats:
        keep = set()
        for row in rows:
            path = output_path(run_dir, fmt, row["utt_id"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(WRITERS[fmt](row), encoding="utf-8")
            os.replace(tmp, path)
            keep.add(path)
        root = Path(run_dir, OUTPUTS_DIR, fmt)
        for stale in root.rglob(f"*.{fmt}"):
            if stale not in keep:
                stale.unlink()
        for tmp in root.rglob(f".*.{fmt}.tmp-*"):  # left by a killed run
            tmp.unlink()
        written[fmt] = len(keep)
    return written
