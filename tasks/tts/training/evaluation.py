"""Held-out evaluation of a voice in training: synthesize, vocode (Griffin-Lim for
SpeechT5's 16 kHz mel, the pretrained universal HiFi-GAN for the 22.05 kHz HiFi-GAN
mel), resample to 16 kHz, transcribe with our Whisper, score against the texts."""

from __future__ import annotations

import time

import numpy as np

from s2s_models import TranscribeOptions
from s2s_models.audio import SAMPLE_RATE
from s2s_models.speecht5 import SpeechT5TTS
from s2s_models.speecht5.generation import GenerationOptions, generate_speech
from s2s_models.speecht5.phonemes import PhonemeTokenizer
from s2s_models.vocoders.mels import SPEECHT5_16K, MelDefinition
from s2s_models.vocoders.pretrained import PRETRAINED_MEL, pretrained_hifigan_files
from tasks.asr.models import get_asr
from tasks.metrics import normalize_text, score_pair
from tasks.tts.audio import VocoderSpec, load_hifigan, vocode, vocode_hifigan_batches
from tasks.tts.evaluation import to_16k

GRIFFIN_LIM = VocoderSpec("griffinlim", None, "griffinlim", SPEECHT5_16K.name)


def _vocode_all(mels: list[np.ndarray], mel: MelDefinition) -> list[np.ndarray]:
    """16 kHz audio of each mel, by the vocoder that reads ``mel``."""
    if mel.name == PRETRAINED_MEL.name:
        checkpoint, _ = pretrained_hifigan_files("universal")
        results = vocode_hifigan_batches(
            load_hifigan(str(checkpoint)), mels, "cpu", mel.silence
        )
        out = []
        for audio, _ in results:
            if isinstance(audio, Exception):
                raise audio
            out.append(to_16k(audio, mel.sample_rate))
        return out
    return [vocode(GRIFFIN_LIM, m) for m in mels]


def synthesize_texts(
    model: SpeechT5TTS,
    tokenizer: PhonemeTokenizer,
    texts: list[str],
    batch_size: int = 16,
    seed: int = 0,
    mel: MelDefinition = SPEECHT5_16K,
) -> tuple[list[np.ndarray], list[bool]]:
    """Generate and vocode each text: 16 kHz audio and whether the stop token ended
    it."""
    model.eval()
    device = next(model.parameters()).device
    mels, stopped = [], []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer.encode_batch(texts[start : start + batch_size])
        result = generate_speech(
            model,
            enc.input_ids.to(device),
            enc.attention_mask.to(device),
            None,
            GenerationOptions(seed=seed, maxlenratio=10.0),
        )
        mels.extend(m.float().cpu().numpy() for m in result.mels)
        stopped.extend(result.stopped)
    return _vocode_all(mels, mel), stopped


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
    mel: MelDefinition = SPEECHT5_16K,
) -> dict:
    """Held-out round trip: synthesize, vocode, transcribe, score."""
    t0 = time.perf_counter()
    audios, stopped = synthesize_texts(model, tokenizer, texts, mel=mel)
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
