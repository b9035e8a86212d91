"""Which vocoder reads a voice's mels: the choice follows the mel definition the
voice records, a mismatch is refused before any work, and 22.05 kHz audio goes
through the audio stage at its own rate and is resampled for the round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flows.cli_tts import main as s2s_tts
from s2s_models.vocoders.mels import HIFIGAN_22K
from tasks.codecs import decode_flac
from tasks.tts.audio import AudioParams, compute_audio, resolve_vocoder
from tasks.tts.engines import EngineError, run_mel, voice_mel
from tests.fixtures.tts.tiny_voice import make_tiny_voice


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> tuple[str, str]:
    """(16 kHz SpeechT5-mel voice, the same weights recorded as hifigan-22k)."""
    root = tmp_path_factory.mktemp("voices")
    old = make_tiny_voice(root / "v16")
    new = Path(shutil.copytree(old, root / "v22"))
    config = json.loads((new / "config.json").read_text())
    config["mel"] = HIFIGAN_22K.to_dict()
    (new / "config.json").write_text(json.dumps(config))
    return str(old), str(new)


def test_vocoder_follows_the_voice_mel(voices, universal_hifigan):
    v16, v22 = voices
    assert voice_mel(v16).name == "speecht5-16k"  # no "mel" in config: legacy
    assert voice_mel(v22).name == "hifigan-22k"
    auto = resolve_vocoder("auto", "speecht5", v22)
    assert (auto.kind, auto.mel) == ("hifigan", "hifigan-22k")
    assert Path(auto.path) == universal_hifigan[0]
    assert resolve_vocoder("ljspeech", "speecht5", v22).mel == "hifigan-22k"
    assert resolve_vocoder("griffinlim", "speecht5", v22).mel == "hifigan-22k"
    assert resolve_vocoder("auto", "speecht5", v16).kind == "griffinlim"
    with pytest.raises(EngineError, match="reads the hifigan-22k mel .22050 Hz. but"):
        resolve_vocoder("universal", "speecht5", v16)
    with pytest.raises(EngineError, match="leave --mel out"):
        run_mel("speecht5", v22, "speecht5-16k")
    # a teacher's mels are what --mel says: 16 kHz by default
    with pytest.raises(EngineError, match="gives speecht5-16k mels"):
        resolve_vocoder("universal", "piper", "default")
    assert resolve_vocoder("universal", "piper", "default", "hifigan-22k").mel == (
        "hifigan-22k"
    )


def test_mismatch_refused_in_one_line_before_any_work(
    voices, universal_hifigan, tmp_path, capsys
):
    v16, _ = voices
    texts = tmp_path / "t.txt"
    texts.write_text("Hello there.\n")
    out = tmp_path / "run"
    argv = ["synthesize", str(texts), "--out", str(out), "--voice", v16]
    code = s2s_tts([*argv, "--vocoder", "universal", "--no-dnsmos"])
    assert code != 0 and not out.exists()
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "would be noise" in message


def test_hifigan_mel_rows_need_the_matching_vocoder(voices, universal_hifigan):
    _, v22 = voices
    spec = resolve_vocoder("auto", "speecht5", v22)
    mel = np.full((20, 80), HIFIGAN_22K.silence, np.float32)
    from tasks.tts.mels import TTS_MEL

    def row(utt_id, name):
        return {
            "utt_id": utt_id,
            "input_key": "k",
            "text": "x",
            "normalized_text": "x",
            "speaker": None,
            "engine_audio": None,
            "mel": name,
            **TTS_MEL.cells(mel),
        }

    ok, wrong = compute_audio(
        [row("a", "hifigan-22k"), row("b", "speecht5-16k")], AudioParams(spec, "cpu")
    )
    assert ok["status"] == "ok" and ok["sampling_rate"] == 22050
    assert ok["duration_s"] == pytest.approx(20 * 256 / 22050)
    assert wrong["status"] == "failed" and "a speecht5-16k mel" in wrong["error"]


@pytest.mark.slow
def test_teacher_at_22k_through_universal_hifigan_round_trip(universal_hifigan):
    """Piper's audio at 22,050 Hz, its hifigan-22k mels vocoded by the universal
    HiFi-GAN, both kept at 22,050 Hz, both understood by Whisper tiny.en after
    resampling to 16 kHz."""
    pytest.importorskip("piper", reason="needs the 'teacher' extra")
    from tasks.asr.models import get_asr
    from tasks.tts.engines import load_teacher
    from tasks.tts.evaluation import (
        TtsEvalOptions,
        TtsEvaluationParams,
        compute_tts_evaluation,
    )
    from tasks.tts.mels import compute_mels_teacher

    sentences = ["The garden gate was open.", "Please bring two cups of tea."]
    rows = [
        {"utt_id": f"s{i}", "input_key": f"k{i}", "text": t, "normalized_text": t}
        | {"speaker": None, "engine": "piper", "mel": "hifigan-22k"}
        for i, t in enumerate(sentences)
    ]
    mels = compute_mels_teacher(load_teacher("piper"), rows, HIFIGAN_22K)
    engine = resolve_vocoder("auto", "piper", "default", "hifigan-22k")
    universal = resolve_vocoder("universal", "piper", "default", "hifigan-22k")
    asr = get_asr("tiny.en", "cpu")
    params = TtsEvaluationParams(TtsEvalOptions(dnsmos=False), "asr-fp")
    for spec in (engine, universal):
        audio = compute_audio(mels, AudioParams(spec, "cpu"))
        for a, m in zip(audio, mels, strict=True):
            samples, rate = decode_flac(a["audio"]["bytes"])
            assert rate == a["sampling_rate"] == 22050
            assert samples.size // 256 == m["n_frames"]
        scored = compute_tts_evaluation(audio, params, asr)
        errors = sum(r["word_errors"] for r in scored)
        words = sum(r["ref_words"] for r in scored)
        assert errors / words <= 0.2, (spec.kind, [r["hypothesis"] for r in scored])
        assert scored[0]["duration_s"] == pytest.approx(audio[0]["duration_s"], 1e-3)
