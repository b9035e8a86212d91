"""Named log-mel definitions: what a voice is trained to predict and a vocoder reads.

Two definitions are in use, and a mel of one is noise to a vocoder of the other:

* ``speecht5-16k``: SpeechT5's (and its HiFi-GAN's). 16 kHz audio, periodic Hann
  window of 1024, hop 256, centred STFT with reflect padding, magnitude spectrum,
  80 Slaney mel filters 80-7600 Hz, log10 floored at 1e-10. ``n_samples // 256 + 1``
  frames.
* ``hifigan-22k``: jik876/hifi-gan's (the universal and LJSpeech V1 generators).
  22,050 Hz audio, periodic Hann window of 1024, hop 256, the signal reflect-padded
  by (n_fft - hop) / 2 on each side and *not* centred, magnitude
  ``sqrt(re^2 + im^2 + 1e-9)``, 80 Slaney mel filters 0-8000 Hz, natural log floored
  at 1e-5. ``n_samples // 256`` frames, so a generator's ``n_frames * 256`` samples
  match the audio's length.

Both use Slaney-scale, area-normalised filters (librosa's ``htk=False,
norm="slaney"``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class MelDefinition:
    name: str
    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    log_base: str  # "log10" | "ln"
    floor: float  # the mel is clamped here before the log
    padding: str  # "center": torch.stft centring | "hifigan": (n_fft - hop) / 2
    magnitude_eps: float = 0.0  # added to re^2 + im^2 before the square root

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def silence(self) -> float:
        """The log-mel value of digital silence (the floor)."""
        return self.log(self.floor)

    def log(self, x: float) -> float:
        return math.log10(x) if self.log_base == "log10" else math.log(x)

    def n_frames(self, n_samples: int) -> int:
        if self.padding == "center":
            return n_samples // self.hop_length + 1
        return max(n_samples - self.hop_length, 0) // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)

    def verify(self) -> None:
        if self.log_base not in ("log10", "ln"):
            raise ValueError(f"log_base must be log10 or ln, got {self.log_base!r}")
        if self.padding not in ("center", "hifigan"):
            raise ValueError(f"padding must be center or hifigan, got {self.padding!r}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError("need 0 <= fmin < fmax <= sample_rate / 2")


SPEECHT5_16K = MelDefinition(
    name="speecht5-16k",
    sample_rate=16000,
    n_fft=1024,
    win_length=1024,
    hop_length=256,
    n_mels=80,
    fmin=80.0,
    fmax=7600.0,
    log_base="log10",
    floor=1e-10,
    padding="center",
)
HIFIGAN_22K = MelDefinition(
    name="hifigan-22k",
    sample_rate=22050,
    n_fft=1024,
    win_length=1024,
    hop_length=256,
    n_mels=80,
    fmin=0.0,
    fmax=8000.0,
    log_base="ln",
    floor=1e-5,
    padding="hifigan",
    magnitude_eps=1e-9,
)
MEL_DEFINITIONS = {d.name: d for d in (SPEECHT5_16K, HIFIGAN_22K)}
# A voice whose config names no mel definition was trained before there was a
# choice: on SpeechT5's.
LEGACY_MEL = SPEECHT5_16K.name


def get_mel_definition(name: str) -> MelDefinition:
    try:
        return MEL_DEFINITIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown mel definition {name!r}; choose from {sorted(MEL_DEFINITIONS)}"
        ) from None


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    linear = 3.0 * hz / 200.0  # 15 mels at 1 kHz, linear below
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = 200.0 * mel / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=8)
def slaney_mel_filters(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> Tensor:
    """Slaney-normalised triangular filters, (n_mels, n_fft // 2 + 1) float64."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_edges = np.linspace(
        _hz_to_slaney_mel(np.array(fmin)), _hz_to_slaney_mel(np.array(fmax)), n_mels + 2
    )
    edges_hz = _slaney_mel_to_hz(mel_edges)  # (n_mels + 2,)
    slopes = edges_hz[None, :] - fft_hz[:, None]  # (n_freq, n_mels + 2)
    widths = np.diff(edges_hz)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))  # (n_freq, n_mels)
    filters *= 2.0 / (edges_hz[2:] - edges_hz[:-2])  # equal area per filter
    return torch.from_numpy(filters.T.copy())


def mel_filters(definition: MelDefinition) -> Tensor:
    d = definition
    return slaney_mel_filters(d.sample_rate, d.n_fft, d.n_mels, d.fmin, d.fmax)


def magnitude(audio: Tensor, definition: MelDefinition) -> Tensor:
    """(n_samples,) float64 -> |STFT| (n_freq, n_frames) under ``definition``."""
    d = definition
    window = torch.hann_window(d.win_length, periodic=True, dtype=audio.dtype)
    center = d.padding == "center"
    if not center:
        pad = (d.n_fft - d.hop_length) // 2
        mode = "reflect" if audio.numel() > pad else "constant"
        audio = torch.nn.functional.pad(audio[None, None], (pad, pad), mode=mode)[0, 0]
    spec = torch.stft(
        audio,
        d.n_fft,
        d.hop_length,
        d.win_length,
        window,
        center=center,
        pad_mode="reflect",
        return_complex=True,
    )
    if d.magnitude_eps:
        return torch.sqrt(spec.real**2 + spec.imag**2 + d.magnitude_eps)
    return spec.abs()


def log_mel(audio: Tensor | np.ndarray, definition: MelDefinition) -> Tensor:
    """The log-mel of mono audio at ``definition.sample_rate``.

    Parameters
    ----------
    audio : (n_samples,) float waveform, nominally in [-1, 1].
    definition : which mel (``MEL_DEFINITIONS``).

    Returns
    -------
    (n_frames, n_mels) float32, ``n_frames = definition.n_frames(n_samples)``.
    """
    audio = torch.as_tensor(audio).to(torch.float64)
    if audio.dim() != 1:
        raise ValueError(f"expected mono (n_samples,), got shape {tuple(audio.shape)}")
    if audio.numel() < definition.n_fft // 2 + 1:  # too short to reflect-pad
        audio = torch.nn.functional.pad(audio, (0, definition.n_fft // 2 + 1))
    mel = mel_filters(definition) @ magnitude(audio, definition)  # (n_mels, n_frames)
    mel = mel.clamp(min=definition.floor)
    logged = torch.log10(mel) if definition.log_base == "log10" else torch.log(mel)
    return logged.T.to(torch.float32)
