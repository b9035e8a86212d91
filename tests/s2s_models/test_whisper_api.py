"""Public ASR API: options, input checks, ordering, progress, empty input."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s2s_models import (
    Segment,
    TranscribeOptions,
    Transcription,
    WhisperASR,
    Word,
    load_asr,
)
from tasks.asr.transcripts import SEGMENT_STRUCT, WORD_STRUCT

FIXTURES = Path(__file__).parents[1] / "fixtures" / "longform"
SR = 16_000


def test_options_round_trip_through_json():
    options = TranscribeOptions(language="en", temperatures=(0.0, 0.5), batch_size=4)
    options.verify()
    restored = TranscribeOptions(**json.loads(json.dumps(dataclasses.asdict(options))))
    assert restored == options
    assert hash(restored) == hash(options)


@pytest.mark.parametrize(
    "bad",
    [
        {"longform_mode": "chunked"},
        {"batch_size": -1},  # 0 is auto
        {"beam_size": 0},
        {"temperatures": ()},
        {"max_chunk_s": 45.0},
        {"vad_threshold": 1.2},
        {"task": "summarise"},
    ],
)
def test_options_verify_rejects(bad):
    with pytest.raises(ValueError):
        TranscribeOptions(**bad).verify()


def test_segment_fields_match_the_transcripts_schema():
    # tasks/schemas.py SEGMENT_STRUCT stores dataclasses.asdict(segment) as is
    names = [f.name for f in dataclasses.fields(Segment)]
    assert names == [
        "start_s",
        "end_s",
        "text",
        "avg_logprob",
        "no_speech_prob",
        "compression_ratio",
        "temperature",
        "flag",
    ]
    assert names == [f.name for f in SEGMENT_STRUCT]
    assert [f.name for f in dataclasses.fields(Word)] == [f.name for f in WORD_STRUCT]
    assert {"segments", "words"} <= {f.name for f in dataclasses.fields(Transcription)}


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    return load_asr("tiny.en", device="cpu")


@pytest.fixture(scope="module")
def clips():
    audio, _ = sf.read(FIXTURES / "speech_60s.flac", dtype="float32")
    items = json.loads((FIXTURES / "speech_60s.json").read_text())["items"]
    jfk, lj = items[0], items[4]
    return {
        "jfk": audio[int(jfk["start_s"] * SR) : int(jfk["end_s"] * SR)],
        "lj": audio[int(lj["start_s"] * SR) : int(lj["end_s"] * SR)],
    }


def test_model_identity(asr):
    assert asr.name == "tiny.en"
    assert str(asr.device) == "cpu"
    assert len(asr.sha256) == 64 and asr.fingerprint == asr.sha256[:16]
    int(asr.sha256, 16)  # hex digits


def test_bad_input_raises(asr):
    assert asr.transcribe([]) == []
    with pytest.raises(ValueError, match="mono"):
        asr.transcribe([np.zeros((2, SR), np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        asr.transcribe([np.full(SR, np.nan, np.float32)])
    with pytest.raises(ValueError):
        asr.transcribe([np.zeros(SR, np.float32)], TranscribeOptions(batch_size=-1))


@pytest.mark.slow
def test_batch_keeps_input_order_and_reports_progress(asr, clips):
    audios = [
        np.zeros(0, np.float32),
        clips["jfk"],
        np.zeros(3 * SR, np.float32),
        clips["lj"],
        clips["jfk"].astype(np.float64),  # other float dtypes are accepted
    ]
    seen: list[float] = []
    options = TranscribeOptions(batch_size=8, without_timestamps=True)
    results = asr.transcribe(audios, options, seen.append)
    assert [r.text for r in results][0] == "" and results[2].text == ""
    assert "ask not what your country can do for you" in results[1].text.lower()
    assert results[4].text == results[1].text
    assert "1813" in results[3].text or "eighteen" in results[3].text.lower()
    for audio, result in zip(audios, results, strict=True):
        assert result.duration_s == pytest.approx(len(audio) / SR)
        assert result.language == "en"
    assert np.isnan(results[0].avg_logprob)
    assert -1.0 < results[1].avg_logprob < 0 and 0 <= results[1].no_speech_prob < 0.5
    [segment] = results[1].segments  # one window, no timestamps: one segment
    assert segment.start_s == 0.0
    assert segment.end_s == pytest.approx(len(clips["jfk"]) / SR, abs=1e-3)
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(sum(len(a) for a in audios) / SR)


@pytest.mark.slow
def test_timestamps_give_finer_segments(asr, clips):
    [result] = asr.transcribe([clips["jfk"]])  # timestamps are on by default
    assert len(result.segments) >= 2
    assert result.segments[0].start_s < 1.0
    assert result.segments[-1].end_s <= len(clips["jfk"]) / SR + 1e-6
    joined = " ".join(s.text.strip() for s in result.segments)
    assert joined == result.text
