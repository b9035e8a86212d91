"""Vocoders (log-mel -> waveform: HiFi-GAN, Griffin-Lim) and SpeechT5's log-mel."""

from .griffinlim import (
    GriffinLimOptions,
    griffin_lim,
    griffin_lim_from_log_mel,
    mel_to_magnitude,
    spectral_convergence,
    speecht5_log_mel,
    speecht5_mel_filters,
)
from .hifigan import (
    HiFiGanDims,
    HiFiGanGenerator,
    fold_weight_norm,
    load_hf_hifigan,
    load_jik876_hifigan,
)

__all__ = [
    "GriffinLimOptions",
    "HiFiGanDims",
    "HiFiGanGenerator",
    "fold_weight_norm",
    "griffin_lim",
    "griffin_lim_from_log_mel",
    "load_hf_hifigan",
    "load_jik876_hifigan",
    "mel_to_magnitude",
    "spectral_convergence",
    "speecht5_log_mel",
    "speecht5_mel_filters",
]
