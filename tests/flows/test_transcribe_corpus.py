"""transcribe-corpus end to end on real speech with the bundled tiny.en weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from flows.transcribe_corpus import transcribe_corpus
from tasks.stage import list_parts, read_stage
from tests.conftest import BAD_AUDIO, REPO, SAMPLES

GOOD_IDS = {
    "jfk", "2412-153948-0000", "1995-1837-0001", "LJ001-0001", "LJ002-0020",
    "sense_and_sensibility_01_austen_64kb-0880",
}  # fmt: skip


def _ids(run_dir, stage):
    return read_stage(run_dir, stage, ["utt_id"])["utt_id"].to_pylist()


@pytest.mark.usefixtures("prefect_harness")
def test_samples_with_broken_files_then_rerun_then_growth(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES, corpus / "good")
    corpus.joinpath("bad").mkdir()
    for name in ("empty.wav", "truncated.flac", "nan_samples.wav", "one_sample.wav"):
        shutil.copy(BAD_AUDIO / name, corpus / "bad" / name)
    run = str(tmp_path / "run")
    inputs = [str(corpus / "good"), str(corpus / "bad")]

    summary = transcribe_corpus(inputs, run, asr_shard_size=4)
    assert summary["n_failed"] == 3
    transcripts = read_stage(run, "transcripts").to_pandas().set_index("utt_id")
    assert set(transcripts.index) == GOOD_IDS | {"one_sample"}
    assert (transcripts["status"] == "ok").all()
    assert "ask not what your country can do for you" in transcripts.loc["jfk", "text"]
    ev = summary["evaluation"]
    assert ev["n_scored"] == 6 and ev["wer"] < 0.10  # tiny.en on clean read speech
    assert ev["wer_ci_low"] <= ev["wer"] <= ev["wer_ci_high"]
    report = Path(summary["report"]).read_text()
    assert "<audio" in report and "jfk" in report

    again = transcribe_corpus(inputs, run, asr_shard_size=4)
    assert again["stages"]["transcripts"]["n_todo"] == 0
    assert again["evaluation"]["wer"] == ev["wer"]

    shutil.copy(SAMPLES / "LJ002-0020.wav", corpus / "good" / "extra.wav")
    grown = transcribe_corpus(inputs, run, asr_shard_size=4)
    assert grown["stages"]["transcripts"]["n_todo"] == 1
    ids = _ids(run, "transcripts")
    assert len(ids) == len(set(ids)) == len(GOOD_IDS) + 2


def test_sigkill_mid_transcription_then_resume(tmp_path):
    """Kill the real CLI process while it is writing transcript parts, rerun it,
    and find every utterance exactly once."""
    corpus = tmp_path / "corpus"
    for i in range(4):  # 24 utterances, shards of 2: many parts to kill between
        shutil.copytree(SAMPLES, corpus / f"copy{i}")
    run = tmp_path / "run"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    }
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "flows.cli", "transcribe", str(corpus), "--out",
           str(run), "--asr-shard-size", "2", "--json"]  # fmt: skip
    # Its own process group, so the kill takes the run's Prefect API server down
    # with it, as when a machine or a job scheduler kills the whole job.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.time() + 600
    while len(list_parts(run, "transcripts")) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no transcript parts appeared"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(_ids(run, "transcripts"))
    assert 0 < n_before < 24

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["stages"]["transcripts"]["n_todo"] == 24 - n_before
    ids = _ids(run, "transcripts")
    assert len(ids) == len(set(ids)) == 24
    table = read_stage(run, "transcripts", ["status"])
    assert pc.all(pc.equal(table["status"], "ok")).as_py()
