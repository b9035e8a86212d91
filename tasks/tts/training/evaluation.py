"""Held-out evaluation of a voice in training: synthesize, vocode with Griffin-Lim,
transcribe with our Whisper, score against the texts."""

from __future__ import annotations

import time

import numpy as np

from s2s_models import TranscribeOptions
from s2s_models.audio import SAMPLE_RATE
from s2s_models.speecht5 import SpeechT5TTS
from s2s_models.speecht5.generation import GenerationOptions, generate_speech
from s2s_models.speecht5.phonemes import PhonemeTokenizer
from tasks.asr.models import get_asr
from tasks.metrics import normalize_text, score_pair
from tasks.tts.audio import VocoderSpec, vocode

GRIFFIN_LIM = VocoderSpec("griffinlim", None, "griffinlim")


def synthesize_texts(
    model: SpeechT5TTS,
    tokenizer: PhonemeTokenizer,
    texts: list[str],
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[bool]]:
    """Generate and vocode (Griffin-Lim) each text: 16 kHz audio and whether the stop
    token ended it."""
    model.eval()
    device = next(model.parameters()).device
    audios, stopped = [], []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer.encode_batch(texts[start : start + batch_size])
        result = generate_speech(
            model,
            enc.input_ids.to(device),
            enc.attention_mask.to(device),
            None,
            GenerationOptions(seed=seed, maxlenratio=10.0),
        )
        for mel in result.mels:
            audios.append(vocode(GRIFFIN_LIM, mel.float().cpu().numpy()))
        stopped.extend(result.stopped)
    return audios, stopped


def round_trip(
    audios: list[np.ndarray], texts: list[str], asr_model: str, device: str = "auto"
) -> dict:
    """WER/CER of Whisper's transcripts of ``audios`` against ``texts``."""
    asr = get_asr(asr_model, device)
    hyps = [r.text for r in asr.transcribe(audios, TranscribeOptions())]
    totals = {"errors": 0.0, "words": 0.0, "char_errors": 0.0, "chars": 0.0}
    items = []
    for ref, hyp in zip(texts, hyps, strict=True):
        s = score_pair(
            normalize_text(ref, "whisper_english"),
            normalize_text(hyp, "whisper_english"),
        )
        totals["errors"] += s["substitutions"] + s["deletions"] + s["insertions"]
        totals["words"] += s["ref_words"]
        totals["char_errors"] += s["char_errors"]
        totals["chars"] += s["ref_chars"]
        items.append({"text": ref, "hypothesis": hyp, "wer": s["wer"]})
    return {
        "asr_model": asr_model,
        "wer": totals["errors"] / max(totals["words"], 1),
        "cer": totals["char_errors"] / max(totals["chars"], 1),
        "items": items,
    }


def evaluate_voice(
    model: SpeechT5TTS,
    tokenizer: PhonemeTokenizer,
    texts: list[str],
    asr_models: tuple[str, ...] = ("tiny.en",),
    device: str = "auto",
) -> dict:
    """Held-out round trip: synthesize, Griffin-Lim, transcribe, score."""
    t0 = time.perf_counter()
    audios, stopped = synthesize_texts(model, tokenizer, texts)
    synth_s = time.perf_counter() - t0
    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
    out = {
        "n": len(texts),
        "stop_failures": sum(not s for s in stopped) / len(texts),
        "audio_seconds": audio_s,
        "synth_rtfx": audio_s / max(synth_s, 1e-9),
    }
    for name in asr_models:
        scored = round_trip(audios, texts, name, device)
        out[name] = {k: scored[k] for k in ("wer", "cer")}
        out[f"{name}_items"] = scored["items"]
    return out
