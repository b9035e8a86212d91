"""Pure PyTorch speech models: Whisper ASR, SpeechT5 TTS, vocoders.

The ASR entry point is re-exported here: ``from s2s_models import load_asr``.
"""

from s2s_models.whisper.api import WhisperASR, load_asr
from s2s_models.whisper.transcription import (
    Segment,
    TranscribeOptions,
    Transcription,
    Word,
)

__all__ = [
    "Segment",
    "TranscribeOptions",
    "Transcription",
    "WhisperASR",
    "Word",
    "load_asr",
]
