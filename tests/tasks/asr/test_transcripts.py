"""Transcripts stage logic: out-of-memory backoff and failure isolation (with a
stand-in model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2s_models import TranscribeOptions
from tasks.asr.transcripts import (
    TranscriptsParams,
    compute_transcripts,
    transcribe_with_backoff,
)
from tasks.codecs import encode_flac


class _SmallMemoryASR:
    """Runs out of memory above `fits` windows per batch, like a busy GPU; a
    recording of `bad` samples raises."""

    device = "cpu"

    def __init__(self, fits: int, bad: int = -1):
        self.fits, self.bad, self.tried = fits, bad, []

    def transcribe(self, audios, options):
        self.tried.append(options.batch_size)
        if any(a.size == self.bad for a in audios):
            raise ValueError("undecodable window")
        if options.batch_size > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [_Result(f"{a.size} samples") for a in audios]


class _Result:
    def __init__(self, text: str):
        self.text, self.language, self.segments, self.words = text, "en", [], []
        self.avg_logprob = self.no_speech_prob = self.compression_ratio = 0.0
        self.temperature = 0.0


def _rows(sizes: list[int]) -> list[dict]:
    return [
        {
            "utt_id": f"u{i}",
            "input_key": f"k{i}",
            "num_samples": n,
            "sampling_rate": 16000,
            "audio": {"bytes": encode_flac(np.zeros(n, np.float32), 16000)},
        }
        for i, n in enumerate(sizes)
    ]


def _params(batch_size: int) -> TranscriptsParams:
    return TranscriptsParams(
        "stand-in", "fp", "cpu", "float32", TranscribeOptions(batch_size=batch_size)
    )


def test_out_of_memory_halves_the_batch_until_it_fits():
    asr = _SmallMemoryASR(fits=2)
    audios = [np.zeros(n, np.float32) for n in (16000, 32000, 8000)]
    out = transcribe_with_backoff(asr, audios, TranscribeOptions(batch_size=16))
    assert asr.tried == [16, 8, 4, 2]
    assert [r.text for r in out] == ["16000 samples", "32000 samples", "8000 samples"]


def test_out_of_memory_at_batch_one_is_raised():
    with pytest.raises(torch.OutOfMemoryError):
        transcribe_with_backoff(
            _SmallMemoryASR(fits=0), [np.zeros(10)], TranscribeOptions(batch_size=4)
        )


def test_shard_survives_memory_pressure_without_failed_rows():
    asr = _SmallMemoryASR(fits=1)
    rows = compute_transcripts(_rows([160, 320]), _params(8), asr)
    assert [(r["utt_id"], r["status"], r["text"]) for r in rows] == [
        ("u0", "ok", "160 samples"),
        ("u1", "ok", "320 samples"),
    ]
    assert asr.tried == [8, 4, 2, 1]
    assert rows[0]["decoding_settings"] == rows[1]["decoding_settings"]
    assert '"precision": "float32"' in rows[0]["decoding_settings"]


def test_one_bad_recording_fails_alone():
    asr = _SmallMemoryASR(fits=8, bad=320)
    rows = compute_transcripts(_rows([160, 320, 480]), _params(8), asr)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error"] == "ValueError: undecodable window"
    assert rows[1]["duration_s"] == 320 / 16000 and rows[1]["model"] == "stand-in"
    assert rows[2]["text"] == "480 samples" and rows[2]["input_key"] == "k2"
