"""Vocoders (log-mel -> waveform: HiFi-GAN, Griffin-Lim) and the log-mel definitions
they read (``mels``: SpeechT5's 16 kHz one and HiFi-GAN's 22.05 kHz one)."""

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
from .mels import (
    HIFIGAN_22K,
    MEL_DEFINITIONS,
    SPEECHT5_16K,
    MelDefinition,
    get_mel_definition,
    log_mel,
    mel_filters,
)

__all__ = [
    "HIFIGAN_22K",
    "MEL_DEFINITIONS",
    "SPEECHT5_16K",
    "MelDefinition",
    "get_mel_definition",
    "log_mel",
    "mel_filters",
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
