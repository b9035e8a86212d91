"""Whisper speech recognition in plain PyTorch."""

# Long-form transcription entry point (api.py). Its Segment (absolute times and
# scores) is exported as s2s_models.Segment, not here, where Segment is decoding's.
from s2s_models.whisper.api import (
    TranscribeOptions,
    Transcription,
    WhisperASR,
    load_asr,
)
from s2s_models.whisper.checkpoints import load_model, resolve_checkpoint
from s2s_models.whisper.decoding import (
    DecodingOptions,
    DecodingResult,
    Segment,
    decode,
    decode_with_fallback,
    detect_language,
)
from s2s_models.whisper.model import KVCache, Whisper, WhisperDims
from s2s_models.whisper.tokenizer import WhisperTokenizer

__all__ = [
    "DecodingOptions",
    "DecodingResult",
    "KVCache",
    "Segment",
    "Whisper",
    "WhisperDims",
    "WhisperTokenizer",
    "decode",
    "decode_with_fallback",
    "detect_language",
    "load_model",
    "resolve_checkpoint",
    "TranscribeOptions",
    "Transcription",
    "WhisperASR",
    "load_asr",
]
