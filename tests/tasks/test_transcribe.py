"""Transcripts stage logic: out-of-memory backoff (with a stand-in model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2s_models import TranscribeOptions
from tasks.transcribe import compute_transcripts, transcribe_with_backoff


class _SmallMemoryASR:
    """Runs out of memory above `fits` windows per batch, like a busy GPU."""

    def __init__(self, fits: int):
        self.fits, self.tried = fits, []

    def transcribe(self, audios, options):
        self.tried.append(options.batch_size)
        if options.batch_size > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [f"{a.size} samples" for a in audios]


def test_out_of_memory_halves_the_batch_until_it_fits():
    asr = _SmallMemoryASR(fits=2)
    audios = [np.zeros(n, np.float32) for n in (16000, 32000, 8000)]
    out = transcribe_with_backoff(asr, audios, TranscribeOptions(batch_size=16))
    assert asr.tried == [16, 8, 4, 2]
    assert out == ["16000 samples", "32000 samples", "8000 samples"]


def test_out_of_memory_at_batch_one_is_raised():
    with pytest.raises(torch.OutOfMemoryError):
        transcribe_with_backoff(
            _SmallMemoryASR(fits=0), [np.zeros(10)], TranscribeOptions(batch_size=4)
        )


def test_shard_survives_memory_pressure_without_failed_rows(monkeypatch):
    import tasks.transcribe

    monkeypatch.setattr(tasks.transcribe, "_row", lambda u, k, r, *a: {"id": u, "r": r})
    asr = _SmallMemoryASR(fits=1)
    rows = compute_transcripts(
        asr, ["a", "b"], ["ka", "kb"], [np.zeros(160, np.float32)] * 2,
        TranscribeOptions(batch_size=8), {},
    )  # fmt: skip
    assert rows == [{"id": "a", "r": "160 samples"}, {"id": "b", "r": "160 samples"}]
    assert asr.tried == [8, 4, 2, 1]
