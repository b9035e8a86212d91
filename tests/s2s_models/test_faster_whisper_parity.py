"""End-to-end parity with faster-whisper: same tiny.en weights, greedy, no timestamps.

Our default log-mel padding follows faster-whisper's, so the whole transcription
path (VAD planning, features, batched decoding across files) must give the very
same text on the bundled sample speech, with one known exception (`NEAR_TIE`).
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


# 1995-1837-0001: "the loss of the cotton itself" (ours, and the reference text)
# against faster-whisper's "carton". At that word the two are a near tie: our
# tiny.en gives " cotton" log-prob -0.815 and " cart" (of " carton") -0.854, so the
# small differences of CTranslate2's kernels tip it the other way. The rest of the
# text is the same word for word, and the other five files are identical.
NEAR_TIE = {"1995-1837-0001": ("cotton", "carton")}


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
    for path, got, want in zip(paths, ours, expected, strict=True):
        if path.stem in NEAR_TIE:
            ours_word, theirs = NEAR_TIE[path.stem]
            assert got.text.strip().replace(ours_word, theirs) == want, (got, want)
        else:
            assert got.text.strip() == want, path.stem
