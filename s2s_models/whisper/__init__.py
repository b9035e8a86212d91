"""Whisper speech recognition in plain PyTorch."""

from s2s_models.whisper.api import WhisperASR, load_asr
from s2s_models.whisper.checkpoints import load_model, resolve_checkpoint
from s2s_models.whisper.decoding import (
    DecodingOptions,
    DecodingResult,
    WindowSegment,
    decode,
    decode_with_fallback,
    detect_language,
)
from s2s_models.whisper.model import KVCache, Whisper, WhisperDims
from s2s_models.whisper.tokenizer import WhisperTokenizer
from s2s_models.whisper.transcription import (
    Segment,
    TranscribeOptions,
    Transcription,
    Word,
)

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
    "WindowSegment",
    "Word",
    "load_asr",
]
