"""tts_evaluation logic: round-trip scoring with the bundled tiny.en on real speech
(a public-domain JFK clip stands in for synthesized audio), DNSMOS, the summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.asr.models import get_asr
from tasks.codecs import decode_flac, encode_flac
from tasks.tts.evaluation import (
    TtsEvalOptions,
    TtsEvaluationParams,
    compute_tts_evaluation,
    compute_tts_summary,
    dnsmos_scores,
)
from tests.conftest import FIXTURES

# tests/fixtures/whisper/README.md: public-domain speech (JFK, 1961), 11 s
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, ask "
    "what you can do for your country."
)


@pytest.fixture(scope="module")
def jfk_audio():
    audio, rate = decode_flac((FIXTURES / "whisper" / "jfk.flac").read_bytes())
    assert rate == 16000
    return audio


def test_round_trip_on_real_speech(jfk_audio):
    asr = get_asr("tiny.en", "cpu")
    rows = [
        {"utt_id": "jfk", "input_key": "k1", "text": JFK_TEXT},
        {"utt_id": "wrong", "input_key": "k2", "text": "Completely different words."},
        {"utt_id": "silent", "input_key": "k3", "text": "Nothing was said."},
    ]
    audios = [jfk_audio, jfk_audio, np.zeros(16000, np.float32)]
    for row, audio in zip(rows, audios, strict=True):
        row["audio"] = {"bytes": encode_flac(audio, 16000), "path": None}
    params = TtsEvaluationParams(TtsEvalOptions(dnsmos=False), "asr-fp")
    out = compute_tts_evaluation(rows, params, asr)
    by = {r["utt_id"]: r for r in out}
    assert all(r["status"] == "ok" for r in out)
    assert by["jfk"]["wer"] < 0.25, by["jfk"]
    assert by["wrong"]["wer"] >= 1.0
    assert by["silent"]["wer"] == 1.0 and by["silent"]["hypothesis_norm"] == ""
    assert by["jfk"]["chars_per_s"] == pytest.approx(
        len(rows[0]["text"]) / (jfk_audio.size / 16000)
    )
    assert by["jfk"].get("dnsmos_ovrl") is None  # not asked for
    assert by["jfk"]["word_errors"] == round(by["jfk"]["wer"] * by["jfk"]["ref_words"])


@pytest.mark.slow
def test_dnsmos_prefers_speech_to_noise(jfk_audio):
    pytest.importorskip("librosa", reason="speechmos needs librosa ('tts' extra)")
    speech = dnsmos_scores(jfk_audio)
    noise = dnsmos_scores(
        np.random.default_rng(0).normal(0, 0.3, 3 * 16000).astype(np.float32)
    )
    assert set(speech) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}
    assert speech["dnsmos_ovrl"] > noise["dnsmos_ovrl"] + 1.0
    assert all(v is None for v in dnsmos_scores(np.zeros(0, np.float32)).values())
    assert all(v is None for v in dnsmos_scores(np.zeros(8000, np.float32)).values())


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _ev(utt_id, ok, word_errors, char_errors, mos) -> dict:
    sig, bak, ovrl, p808 = mos
    return {
        "utt_id": utt_id,
        **ok,
        "word_errors": word_errors,
        "ref_words": 10,
        "char_errors": char_errors,
        "ref_chars": 50,
        "chars_per_s": 12.5,
        "words_per_min": 150.0,
        "dnsmos_sig": sig,
        "dnsmos_bak": bak,
        "dnsmos_ovrl": ovrl,
        "dnsmos_p808": p808,
    }


def test_summary_counts_rates_and_rtfx():
    ok = {"status": "ok", "error": None}
    failed_req = {"utt_id": "d", "status": "failed", "error": "empty text"}
    mels = [("a", False, 1.0), ("b", True, 2.0), ("c", False, 1.0)]
    audio = {"duration_s": 4.0, "vocode_seconds": 0.5}
    frames = {
        "tts_requests": _frame([{"utt_id": u, **ok} for u in "abc"] + [failed_req]),
        "mels": _frame(
            [
                {"utt_id": u, **ok, "hit_max_length": cut, "synth_seconds": t}
                for u, cut, t in mels
            ]
        ),
        "audio": _frame([{"utt_id": u, **ok, **audio} for u in "abc"]),
        "tts_evaluation": _frame(
            [
                _ev("a", ok, 0, 0, (3.0, 4.0, 2.8, 3.5)),
                _ev("b", ok, 5, 10, (2.0, 3.0, 1.8, 2.5)),
                {"utt_id": "c", "status": "failed", "error": "ASR: boom"},
            ]
        ),
    }
    s = compute_tts_summary(frames, TtsEvalOptions(n_bootstrap=200))
    assert s["n_requests"] == 4 and s["n_ok"] == 2 and s["n_scored"] == 2
    assert s["n_failed"] == {
        "tts_requests": 1,
        "mels": 0,
        "audio": 0,
        "tts_evaluation": 1,
    }
    assert s["wer"] == pytest.approx(0.25) and s["cer"] == pytest.approx(0.1)
    assert s["wer_ci_low"] <= 0.25 <= s["wer_ci_high"]
    assert s["dnsmos"]["dnsmos_ovrl"]["mean"] == pytest.approx(2.3)
    assert s["n_stop_failures"] == 1 and s["stop_failure_rate"] == pytest.approx(1 / 3)
    assert s["synthesis_rtfx"] == pytest.approx(12.0 / (4.0 + 1.5))
    assert {(f["stage"], f["utt_id"]) for f in s["failures"]} == {
        ("tts_requests", "d"),
        ("tts_evaluation", "c"),
    }
    assert not math.isnan(s["duration_s"]["p50"])
