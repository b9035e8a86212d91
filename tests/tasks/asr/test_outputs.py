"""Output formats, read back with real parsers (the `srt` and `webvtt-py` packages,
the csv and json modules)."""

import csv
import io
import json

import pytest

from tasks.asr.outputs import FORMATS, WRITERS, format_timestamp, parse_formats


def _seg(start, end, text, flag=None):
    return {
        "start_s": start,
        "end_s": end,
        "text": text,
        "avg_logprob": -0.2,
        "no_speech_prob": 0.1,
        "compression_ratio": 1.3,
        "temperature": 0.0,
        "flag": flag,
    }


ROW = {
    "utt_id": "talk/part-1",
    "text": " Hello there. Ask not --> what. Good night.",
    "language": "en",
    "duration_s": 3725.5,
    "segments": [
        _seg(0.0, 1.5, " Hello there."),
        _seg(1.5, 1.9, "", flag="no_speech"),  # flagged, no text: not a cue
        _seg(61.25, 63.0, " Ask not --> what."),
        _seg(3600.0, 3725.125, " Good night."),
    ],
    "words": [
        {"word": " Hello", "start_s": 0.1, "end_s": 0.6, "probability": 0.98},
        {"word": " there.", "start_s": 0.6, "end_s": 1.2, "probability": float("nan")},
    ],
}


def test_timestamps():
    assert format_timestamp(0.0, True, ",") == "00:00:00,000"
    assert format_timestamp(61.2504, False, ".") == "01:01.250"
    assert format_timestamp(3725.125, False, ".") == "01:02:05.125"
    assert format_timestamp(59.9996, True, ",") == "00:01:00,000"


def test_srt_parses_and_matches_the_segments():
    srt = pytest.importorskip("srt")
    text = WRITERS["srt"](ROW)
    assert "00:01:01,250 --> 00:01:03,000" in text
    subs = list(srt.parse(text))
    assert [s.index for s in subs] == [1, 2, 3]
    assert [s.content for s in subs] == [
        "Hello there.",
        "Ask not -> what.",
        "Good night.",
    ]
    assert subs[1].start.total_seconds() == pytest.approx(61.25)
    assert subs[2].end.total_seconds() == pytest.approx(3725.125)


def test_vtt_parses_and_matches_the_segments():
    webvtt = pytest.importorskip("webvtt")
    text = WRITERS["vtt"](ROW)
    assert text.startswith("WEBVTT\n\n")
    captions = list(webvtt.from_buffer(io.StringIO(text)))
    assert [c.text for c in captions] == [
        "Hello there.",
        "Ask not -> what.",
        "Good night.",
    ]
    assert captions[0].start == "00:00:00.000"  # the parser writes hours back
    assert captions[1].start == "00:01:01.250"
    assert captions[2].end == "01:02:05.125"


def test_tsv_txt_and_json():
    rows = list(csv.DictReader(io.StringIO(WRITERS["tsv"](ROW)), delimiter="\t"))
    assert [(r["start"], r["end"]) for r in rows] == [
        ("0", "1500"),
        ("61250", "63000"),
        ("3600000", "3725125"),
    ]
    assert WRITERS["txt"](ROW).splitlines() == [
        "Hello there.",
        "Ask not -> what.",
        "Good night.",
    ]
    doc = json.loads(WRITERS["json"](ROW))
    assert doc["text"] == ROW["text"].strip() and doc["language"] == "en"
    assert [s["flag"] for s in doc["segments"]] == [None, "no_speech", None, None]
    assert doc["words"][1]["probability"] is None  # NaN is not JSON


def test_parse_formats():
    assert parse_formats("srt, VTT,srt") == ("srt", "vtt")
    assert parse_formats("all") == FORMATS
    with pytest.raises(ValueError, match="unknown output format docx"):
        parse_formats("srt,docx")
