"""SpeechT5-architecture text-to-speech: model, generation loop, tokenizer, loaders."""

from .checkpoints import load_hf_speecht5, load_speecht5, save_speecht5
from .generation import GenerationOptions, GenerationResult, generate_speech
from .model import KVCache, SpeechT5Dims, SpeechT5TTS, TTSOutput

__all__ = [
    "GenerationOptions",
    "GenerationResult",
    "KVCache",
    "SpeechT5Dims",
    "SpeechT5TTS",
    "TTSOutput",
    "generate_speech",
    "load_hf_speecht5",
    "load_speecht5",
    "save_speecht5",
]
