"""SpeechT5's log-mel definition, and a Griffin-Lim vocoder that inverts it.

The mel is the one SpeechT5 (and its HiFi-GAN) was trained on: 16 kHz audio, a
1024-sample periodic Hann window moved by 256 samples, a centred STFT with reflect
padding, the *magnitude* (not power) spectrum, 80 Slaney mel filters (Slaney scale and
area normalisation) from 80 to 7600 Hz, then log10 with a floor of 1e-10 (the value
of the SpeechT5 recipe and of Hugging Face's ``SpeechT5FeatureExtractor``; jik876's
HiFi-GAN uses a natural log floored at 1e-5 instead, a different feature).

Griffin-Lim needs a linear magnitude. The mel filters are a wide (80 x 513) matrix,
so we take the non-negative least-squares solution of ``filters @ S = mel`` by
multiplicative updates started from the clipped pseudo-inverse; bins outside
80-7600 Hz carry no information and stay zero. Then the "fast" Griffin-Lim of Perraudin
et al. (2013) (momentum on the phase estimate) rebuilds the phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .mels import SPEECHT5_16K, MelDefinition, log_mel, mel_filters, slaney_mel_filters

SAMPLE_RATE = 16000
N_FFT = 1024
WIN_LENGTH = 1024  # 64 ms
HOP_LENGTH = 256  # 16 ms
N_MELS = 80
FMIN = 80.0
FMAX = 7600.0
MEL_FLOOR = 1e-10
N_FREQ = N_FFT // 2 + 1  # 513
assert HOP_LENGTH * 1000 // SAMPLE_RATE == 16 and WIN_LENGTH * 1000 // SAMPLE_RATE == 64


def speecht5_mel_filters(n_mels: int = N_MELS) -> Tensor:
    """Slaney-normalised triangular filters, (n_mels, n_freq) float64."""
    return slaney_mel_filters(SAMPLE_RATE, N_FFT, n_mels, FMIN, FMAX)


def _window(dtype: torch.dtype) -> Tensor:
    return torch.hann_window(WIN_LENGTH, periodic=True, dtype=dtype)


def stft_magnitude(audio: Tensor) -> Tensor:
    """(n_samples,) -> |STFT| (n_freq, n_frames), n_frames = 1 + n_samples // hop."""
    spec = torch.stft(
        audio,
        N_FFT,
        HOP_LENGTH,
        WIN_LENGTH,
        _window(audio.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs()


def speecht5_log_mel(audio: Tensor | np.ndarray) -> Tensor:
    """SpeechT5 log10 mel of 16 kHz mono audio: ``log_mel(audio, SPEECHT5_16K)``.

    Parameters
    ----------
    audio : (n_samples,) float waveform at 16 kHz, nominally in [-1, 1].

    Returns
    -------
    (n_frames, 80) float32, n_frames = 1 + n_samples // 256.
    """
    return log_mel(audio, SPEECHT5_16K)


def mel_to_magnitude(
    log_mel: Tensor, n_iter: int = 30, definition: MelDefinition = SPEECHT5_16K
) -> Tensor:
    """Non-negative least-squares linear magnitude for a log-mel (log10 or ln, as
    ``definition`` says).

    (n_frames, n_mels) -> (n_freq, n_frames) float32. Multiplicative updates
    S <- S * (F^T M) / (F^T F S) keep S >= 0 and never raise the squared error; most
    of the gain over the clipped pseudo-inverse comes in the first 30 or so."""
    filters = mel_filters(definition).to(torch.float32)  # (n_mels, n_freq)
    if filters.shape[0] != log_mel.shape[-1]:
        raise ValueError(f"{definition.name} has {filters.shape[0]} mels")
    base = 10.0 if definition.log_base == "log10" else torch.e
    target = torch.pow(base, log_mel.to(torch.float32)).T  # (n_mels, n_frames)
    magnitude = (torch.linalg.pinv(filters) @ target).clamp(min=0.0) + 1e-8
    magnitude = magnitude * (filters.sum(0) > 0)[:, None]  # no filter -> no energy
    numerator = filters.T @ target  # (n_freq, n_frames)
    for _ in range(n_iter):
        magnitude = magnitude * numerator / (filters.T @ (filters @ magnitude) + 1e-12)
    return magnitude


@dataclass(frozen=True)
class GriffinLimOptions:
    # phase-reconstruction iterations; 32 is usable, 60 a little cleaner
    n_iter: int = 32
    # fast Griffin-Lim momentum (0 = plain Griffin-Lim); 0.99 as in Perraudin et al.
    momentum: float = 0.99
    # multiplicative-update iterations for the mel -> linear magnitude step
    nnls_iter: int = 30
    # seed of the random initial phase; None starts from zero phase
    seed: int | None = 0

    def verify(self) -> None:
        if self.n_iter < 0 or self.nnls_iter < 0:
            raise ValueError("n_iter and nnls_iter must be >= 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


def griffin_lim(
    magnitude: Tensor, options: GriffinLimOptions = GriffinLimOptions()
) -> Tensor:
    """Waveform whose STFT magnitude approaches ``magnitude`` (n_freq, n_frames).

    Returns (n_frames * hop_length,) float32 (the last hop is the centred STFT's tail).
    """
    options.verify()
    magnitude = magnitude.to(torch.float32)
    n_frames = magnitude.shape[1]
    window = _window(torch.float32)
    if options.seed is None:
        angles = torch.ones_like(magnitude, dtype=torch.complex64)
    else:
        gen = torch.Generator().manual_seed(options.seed)
        phase = torch.rand(magnitude.shape, generator=gen) * 2 * torch.pi
        angles = torch.polar(torch.ones_like(phase), phase)

    def istft(spec: Tensor, length: int) -> Tensor:
        return torch.istft(
            spec, N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=True, length=length
        )

    inner = (n_frames - 1) * HOP_LENGTH  # length whose STFT has exactly n_frames frames
    previous = torch.zeros_like(angles)
    for _ in range(options.n_iter):
        audio = istft(magnitude * angles, inner)
        rebuilt = torch.stft(
            audio,
            N_FFT,
            HOP_LENGTH,
            WIN_LENGTH,
            window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        angles = rebuilt - previous * (options.momentum / (1.0 + options.momentum))
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    return istft(magnitude * angles, n_frames * HOP_LENGTH)


def spectral_convergence(magnitude: Tensor, audio: Tensor) -> float:
    """|| |STFT(audio)| - magnitude ||_F / ||magnitude||_F over the common frames."""
    rebuilt = stft_magnitude(audio.to(torch.float64))
    n = min(rebuilt.shape[1], magnitude.shape[1])
    target = magnitude[:, :n].to(torch.float64)
    return float(torch.linalg.norm(rebuilt[:, :n] - target) / torch.linalg.norm(target))


def griffin_lim_from_log_mel(
    log_mel: Tensor,
    options: GriffinLimOptions = GriffinLimOptions(),
    definition: MelDefinition = SPEECHT5_16K,
) -> Tensor:
    """Log-mel (n_frames, 80) -> float32 audio (n_frames * 256,) at the definition's
    rate. Both definitions share the STFT sizes (1024 / 256 / 1024); a HiFi-GAN mel's
    frames sit half a hop later than centred frames, which phase recovery ignores."""
    options.verify()
    if (definition.n_fft, definition.hop_length, definition.win_length) != (
        N_FFT,
        HOP_LENGTH,
        WIN_LENGTH,
    ):
        raise ValueError(f"Griffin-Lim: unsupported STFT sizes of {definition.name}")
    magnitude = mel_to_magnitude(log_mel, options.nnls_iter, definition)
    return griffin_lim(magnitude, options)
