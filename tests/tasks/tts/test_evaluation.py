"""tts_evaluation logic: round-trip scoring with the bundled tiny.en on real speech
(a public-domain JFK clip stands in for synthesized audio), DNSMOS, the summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.asr.models import get_asr
from tasks.codecs import decode_flac, encode_flac
from tasks.metrics import normalize_text
from tasks.tts.evaluation import (
    TtsEvalOptions,
    TtsEvaluationParams,
    compute_tts_evaluation,
    compute_tts_summary,
    count_phonemes,
    dnsmos_scores,
    duration_flag,
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
    # 11 s for about 80 phonemes: plausible; 1 s of silence for 12 is not too short
    assert by["jfk"]["duration_flag"] is None and by["jfk"]["n_phonemes"] > 60
    assert by["wrong"]["duration_flag"] == "too_long"  # 11 s for 20 phonemes
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


def _ev(utt_id, ok, word_errors, char_errors, mos, flag=None) -> dict:
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
        "duration_flag": flag,
        "seconds_per_phoneme": 0.08,
    }


def test_duration_per_phoneme_flags():
    n = count_phonemes("Doctor Smith paid five dollars.")
    assert n == 20 and count_phonemes("Dr. Smith paid $5.") == n  # normalised first
    assert duration_flag(1.6, n) is None  # 0.08 s per phoneme
    assert duration_flag(0.7, n) == "too_short"  # stopped after "Doctor"
    assert duration_flag(6.0, n) == "too_long"
    assert duration_flag(1.0, 0) is None


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("It costs $12.50.", "It costs twelve dollars and fifty cents."),
        ("It costs $12.50.", "It costs twelve dollars fifty."),
        ("Dr. Smith met Mr. Jones.", "Doctor Smith met Mister Jones."),
        ("50% of 1,200 people", "fifty percent of one thousand two hundred people"),
        ("in the 1990s", "in the nineteen nineties"),
        ("the U.S.A. and the FBI", "the U S A and the F B I"),
    ],
)
def test_round_trip_normaliser_scores_written_and_spoken_alike(written, said):
    """The round trip compares the input text with what Whisper heard: a voice that
    says the spoken form must not be charged for the written one."""
    assert normalize_text(written, "whisper_english") == normalize_text(
        said, "whisper_english"
    )


def test_summary_counts_rates_and_rtfx():
    ok = {"status": "ok", "error": None}
    failed_req = {"utt_id": "d", "status": "failed", "error": "empty text"}
    mels = [("a", False, 1.0), ("b", True, 2.0), ("c", False, 1.0)]
    frames = {
        "tts_requests": _frame([{"utt_id": u, **ok} for u in "abc"] + [failed_req]),
        "mels": _frame(
            [
                {
                    "utt_id": u,
                    **ok,
                    "hit_max_length": cut,
                    "synth_seconds": t,
                    "cut_short": u == "c",
                }
                for u, cut, t in mels
            ]
        ),
        "audio": _frame(
            [
                {"utt_id": u, **ok, "duration_s": 4.0, "vocode_seconds": 0.5}
                for u in "abc"
            ]
        ),
        "tts_evaluation": _frame(
            [
                _ev("a", ok, 0, 0, (3.0, 4.0, 2.8, 3.5)),
                _ev("b", ok, 5, 10, (2.0, 3.0, 1.8, 2.5), "too_short"),
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
    # b hit the step limit, c stopped far too early: both are stop failures
    assert s["n_stop_failures"] == 2 and s["stop_failure_rate"] == pytest.approx(2 / 3)
    assert s["n_cut_short"] == 1
    assert s["n_duration_flags"] == {"too_short": 1, "too_long": 0}
    assert s["duration_flagged"] == ["b"]
    assert s["synthesis_rtfx"] == pytest.approx(12.0 / (4.0 + 1.5))
    assert {(f["stage"], f["utt_id"]) for f in s["failures"]} == {
        ("tts_requests", "d"),
        ("tts_evaluation", "c"),
    }
    assert not math.isnan(s["duration_s"]["p50"])
