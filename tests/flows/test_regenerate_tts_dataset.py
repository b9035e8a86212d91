"""regenerate-tts-dataset end to end with a tiny random SpeechT5 voice (saved with
save_speecht5 to a tmp dir by tests/fixtures/tts/tiny_voice.py; it does not speak,
so round-trip WER is ~100%: these tests check the mechanics, not the sound)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from flows.regenerate_tts_dataset import regenerate_tts_dataset
from tasks.stage import read_stage
from tasks.stage.failpoints import FAILPOINT_ENV
from tasks.tts.audio import AUDIO
from tasks.tts.engines import EngineError, SynthesisOptions
from tasks.tts.evaluation import TTS_STAGES, TtsEvalOptions
from tasks.tts.mels import MELS
from tests.conftest import REPO
from tests.fixtures.tts.tiny_voice import make_tiny_voice, write_speaker_embedding

pytestmark = pytest.mark.required  # a main job: never skipped on CI

NO_DNSMOS = TtsEvalOptions(dnsmos=False)


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> str:
    return str(make_tiny_voice(tmp_path_factory.mktemp("voice")))


def _ids(run_dir, stage) -> list[str]:
    return read_stage(run_dir, stage, ["utt_id"])["utt_id"].to_pylist()


@pytest.mark.usefixtures("prefect_harness")
def test_bad_inputs_export_report_and_rerun(tmp_path, voice):
    texts = tmp_path / "texts.txt"
    texts.write_bytes(
        b"Hello there, friend.\n\nA second, longer sentence. It has two parts.\n"
        b"bad \xff bytes\n12345\n" + b"word " * 20000 + b"\nLast line!\n"
    )
    table = tmp_path / "more.csv"
    table.write_text('utt_id,text,speaker\nc1,From a table.,spk1\nc2,"",spk2\n')
    emb = write_speaker_embedding(tmp_path / "spk.npy")
    run = str(tmp_path / "run")
    synthesis = SynthesisOptions(voice=voice, speaker_embedding=str(emb))
    summary = regenerate_tts_dataset(
        [str(texts), str(table)],
        run,
        synthesis,
        evaluation=NO_DNSMOS,
        export_ljspeech_dir=str(tmp_path / "lj"),
        shard_size=3,
    )
    errors = {f["utt_id"]: f["error"] for f in summary["evaluation"]["failures"]}
    assert "not valid UTF-8" in errors["texts-00004"]
    assert "nothing left to say" in errors["texts-00005"]
    assert "more than max_chars" in errors["texts-00006"]
    assert errors["c2"] == "empty text"
    good = {"texts-00001", "texts-00003", "texts-00007", "c1"}
    for stage in TTS_STAGES[1:]:
        ids = _ids(run, stage)
        assert sorted(ids) == sorted(good), stage
    audio = read_stage(run, AUDIO).to_pandas().set_index("utt_id")
    assert (audio["status"] == "ok").all() and (audio["sampling_rate"] == 16000).all()
    assert audio.loc["c1", "speaker"] == "spk1"
    mels = read_stage(run, MELS).to_pandas().set_index("utt_id")
    assert mels["hit_max_length"].all()  # the tiny voice never stops by itself
    assert summary["evaluation"]["n_stop_failures"] == 4
    assert summary["evaluation"]["synthesis_rtfx"] > 0
    lj = (tmp_path / "lj" / "metadata.csv").read_text().splitlines()
    assert len(lj) == 4 and lj[0].startswith("c1|From a table.|")
    assert len(list((tmp_path / "lj" / "wavs").glob("*.wav"))) == 4
    html = open(summary["report"], encoding="utf-8").read()
    assert "Stop-token failures (4)" in html and "data:image/png;base64" in html
    assert "<audio" in html and "texts-00006" in html

    again = regenerate_tts_dataset(
        [str(texts), str(table)],
        run,
        synthesis,
        evaluation=NO_DNSMOS,
        shard_size=3,
        compare_to=run,
    )
    assert all(s["n_todo"] == 0 for s in again["stages"].values())
    assert "Comparison" in open(again["report"], encoding="utf-8").read()

    bad = tmp_path / "short.npy"
    np.save(bad, np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="expected 512 floats"):
        bad_speaker = SynthesisOptions(voice=voice, speaker_embedding=str(bad))
        regenerate_tts_dataset([str(texts)], run, bad_speaker, evaluation=NO_DNSMOS)
    with pytest.raises(EngineError, match="no config.json"):
        no_voice = SynthesisOptions(voice=str(tmp_path / "no-voice-here"))
        regenerate_tts_dataset(
            [str(texts)], str(tmp_path / "r2"), no_voice, evaluation=NO_DNSMOS
        )


def _cli(args: list[str], env: dict, **kw):
    cmd = [sys.executable, "-m", "flows.cli_tts", "synthesize", *args]
    return cmd, dict(cwd=REPO, env=env, **kw)


def test_cli_bad_voice_fails_fast_with_the_reason(tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("Hello.\n")
    args = [str(texts), "--out", str(tmp_path / "run"), "--voice", str(tmp_path)]
    cmd, kw = _cli(args, dict(os.environ))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert done.returncode == 2
    assert "no config.json (not a SpeechT5 voice)" in done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything ran


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_sigkill_mid_mels_then_resume(tmp_path):
    """SIGKILL the real CLI process right after its first mels part, rerun, find
    every utterance exactly once in every stage."""
    from prefect.settings import PREFECT_API_URL

    voice = str(make_tiny_voice(tmp_path / "voice", max_speech_positions=400))
    texts = tmp_path / "texts.txt"
    n = 12
    texts.write_text(
        "".join(f"Sentence number {chr(97 + i % 26)} of the test.\n" for i in range(n))
    )
    run = tmp_path / "run"
    # The runs share the session's Prefect server instead of starting their own.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    args = [str(texts), "--out", str(run), "--voice", voice, "--shard-size", "4"]
    args += ["--no-dnsmos", "--json"]
    cmd, kw = _cli(args, {**env, FAILPOINT_ENV: "mels:1"})
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    n_before = len(_ids(run, MELS))
    assert n_before == 4

    cmd, kw = _cli(args, env)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["stages"]["mels"]["n_todo"] == n - n_before
    for stage in TTS_STAGES:
        ids = _ids(run, stage)
        assert len(ids) == len(set(ids)) == n, stage.name


@pytest.mark.usefixtures("prefect_harness", "universal_hifigan")
def test_hifigan_mel_voice_through_the_universal_hifigan(tmp_path):
    """A voice recording the hifigan-22k mel: --vocoder auto is the pretrained
    universal HiFi-GAN, mels rows name the definition, the audio stage holds
    22,050 Hz audio and the round trip still scores it (resampled to 16 kHz)."""
    from s2s_models.vocoders.mels import HIFIGAN_22K

    voice = make_tiny_voice(tmp_path / "v22", max_speech_positions=24)
    config = json.loads((voice / "config.json").read_text())
    (voice / "config.json").write_text(
        json.dumps({**config, "mel": HIFIGAN_22K.to_dict()})
    )
    texts = tmp_path / "texts.txt"
    texts.write_text("One short line.\nAnd another one.\n")
    run = str(tmp_path / "run")
    summary = regenerate_tts_dataset(
        [str(texts)], run, SynthesisOptions(voice=str(voice)), evaluation=NO_DNSMOS
    )
    assert summary["run_info"]["vocoder"] == "hifigan"
    assert summary["run_info"]["sample_rate"] == 22050
    mels = read_stage(run, MELS).to_pandas()
    assert (mels["mel"] == "hifigan-22k").all()
    audio = read_stage(run, AUDIO).to_pandas()
    assert (audio["status"] == "ok").all() and (audio["sampling_rate"] == 22050).all()
    assert np.allclose(audio["duration_s"], mels["n_frames"] * 256 / 22050)
    assert summary["evaluation"]["n_ok"] == 2
