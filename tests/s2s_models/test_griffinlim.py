"""SpeechT5 log-mel (against transformers' SpeechT5FeatureExtractor) and Griffin-Lim
reconstruction of a real speech clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s2s_models.vocoders import (
    GriffinLimOptions,
    griffin_lim,
    griffin_lim_from_log_mel,
    mel_to_magnitude,
    spectral_convergence,
    speecht5_log_mel,
    speecht5_mel_filters,
)
from s2s_models.vocoders.griffinlim import HOP_LENGTH, stft_magnitude

# LibriSpeech 2412-153948-0000 (CC BY 4.0), 16 kHz; attribution in that folder's README
CLIP = (
    Path(__file__).parents[1]
    / "fixtures"
    / "whisper"
    / "librispeech_2412-153948-0000.flac"
)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not CLIP.exists():
        pytest.skip(f"fixture {CLIP.name} missing")
    audio, rate = sf.read(CLIP, dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    return audio


def test_log_mel_shape_and_floor():
    silence = np.zeros(16000, dtype=np.float32)
    mel = speecht5_log_mel(silence)
    assert mel.shape == (1 + 16000 // HOP_LENGTH, 80) and mel.dtype == torch.float32
    assert torch.all(mel == -10.0)  # log10 of the 1e-10 floor
    with pytest.raises(ValueError):
        speecht5_log_mel(np.zeros((2, 100), dtype=np.float32))


@pytest.mark.parity
def test_log_mel_matches_transformers(speech):
    transformers = pytest.importorskip("transformers")
    extractor = transformers.SpeechT5FeatureExtractor()
    assert (
        np.abs(extractor.mel_filters - speecht5_mel_filters().numpy().T).max() < 1e-12
    )
    ref = extractor(audio_target=speech, sampling_rate=16000).input_values[0]
    ours = speecht5_log_mel(speech).numpy()
    assert ours.shape == ref.shape == (1 + len(speech) // HOP_LENGTH, 80)
    assert np.abs(ours - ref).max() <= 1e-5


def test_nnls_magnitude_reproduces_the_mel(speech):
    log_mel = speecht5_log_mel(speech[: 3 * 16000])
    magnitude = mel_to_magnitude(log_mel)
    assert magnitude.shape == (513, log_mel.shape[0]) and magnitude.min() >= 0
    filters = speecht5_mel_filters().float()
    back = torch.log10((filters @ magnitude).clamp(min=1e-10)).T
    start = torch.log10(
        (filters @ mel_to_magnitude(log_mel, n_iter=0)).clamp(min=1e-10)
    ).T
    error, start_error = (back - log_mel).abs().mean(), (start - log_mel).abs().mean()
    assert error < 0.005 and error < start_error / 3


def test_griffin_lim_converges_on_real_speech(speech):
    audio = torch.from_numpy(speech[: 3 * 16000])
    log_mel = speecht5_log_mel(audio)
    magnitude = mel_to_magnitude(log_mel)
    convergence, mel_error = {}, {}
    for n_iter in (0, 4, 32):
        wave = griffin_lim(magnitude, GriffinLimOptions(n_iter=n_iter, seed=0))
        assert wave.shape == (log_mel.shape[0] * HOP_LENGTH,)
        convergence[n_iter] = spectral_convergence(magnitude, wave)
        rebuilt = speecht5_log_mel(wave)[: log_mel.shape[0]]
        mel_error[n_iter] = float((rebuilt - log_mel).abs().mean())
    assert convergence[32] < convergence[4] < convergence[0]
    assert convergence[32] < 0.2
    assert mel_error[32] < mel_error[0] / 3 and mel_error[32] < 0.1
    # loudness is kept: the rebuilt clip's energy is within 20 % of the original's
    true = stft_magnitude(audio.double())
    wave = griffin_lim_from_log_mel(log_mel, GriffinLimOptions(n_iter=32))
    ratio = float(stft_magnitude(wave.double()).norm() / true.norm())
    assert 0.8 < ratio < 1.2


def test_griffin_lim_options_verify():
    with pytest.raises(ValueError):
        GriffinLimOptions(momentum=1.0).verify()
    with pytest.raises(ValueError):
        GriffinLimOptions(n_iter=-1).verify()
