"""Whisper speech recognition in plain PyTorch."""

from s2s_models.whisper.checkpoints import load_model, resolve_checkpoint
from s2s_models.whisper.model import KVCache, Whisper, WhisperDims
from s2s_models.whisper.tokenizer import WhisperTokenizer

__all__ = [
    "KVCache",
    "Whisper",
    "WhisperDims",
    "WhisperTokenizer",
    "load_model",
    "resolve_checkpoint",
]
