"""End-to-end parity with faster-whisper: same tiny.en weights, greedy, no timestamps.

Our default log-mel padding follows faster-whisper's, so the whole transcription
path (VAD planning, features, batched decoding across files) must give the very
same text on the bundled sample speech.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from s2s_models import TranscribeOptions, load_asr
from s2s_models.whisper.checkpoints import resolve_checkpoint
from tests.conftest import SAMPLES

faster_whisper = pytest.importorskip("faster_whisper", reason="parity extra missing")
pytestmark = pytest.mark.parity


def _load(path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, 16000).astype(np.float32)


def test_sample_speech_text_identical_to_faster_whisper():
    paths = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".wav", ".flac"))
    audios = [_load(p) for p in paths]
    reference = faster_whisper.WhisperModel(
        str(resolve_checkpoint("tiny.en")), device="cpu", compute_type="float32"
    )
    expected = []
    for audio in audios:
        segments, _ = reference.transcribe(
            audio, beam_size=1, temperature=0.0, without_timestamps=True,
            vad_filter=False, condition_on_previous_text=False, language="en",
        )  # fmt: skip
        expected.append("".join(s.text for s in segments).strip())
    ours = load_asr("tiny.en", device="cpu").transcribe(
        audios, TranscribeOptions(temperatures=(0.0,), without_timestamps=True)
    )
    same = [a.text.strip() == b for a, b in zip(ours, expected, strict=True)]
    assert sum(same) >= len(paths) - 1, list(
        zip([o.text for o in ours], expected, strict=True)
    )
