"""A scheduled run must always end: the real `s2s` CLI over special files beside
real speech, a SIGTERM while a reader is blocked in open() of a FIFO, and a
Prefect cancellation of a deployment run stuck the same way."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest

from tasks.asr.features import FEATURES
from tasks.asr.ingest import INGEST, UNGUARDED_READS_ENV
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import StageSpec, read_stage
from tasks.stage.shutdown import TERMINATION_BOUND_S
from tests.conftest import REPO, SAMPLES

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.required]

SPECIAL_ERRORS = {
    "fifo": "not a regular file: a named pipe (FIFO)",
    "sock": "not a regular file: a socket",
    "zero": "not a regular file: a character device (symlink to /dev/zero)",
    "urandom": "not a regular file: a character device (symlink to /dev/urandom)",
}


def _s2s(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def _shared_api_env() -> dict:
    """Runs share the session's Prefect server instead of starting their own."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def _rows(run, stage: StageSpec) -> dict[str, dict]:
    table = read_stage(run, stage, ["utt_id", "status", "error"]).to_pylist()
    ids = [r["utt_id"] for r in table]
    assert len(ids) == len(set(ids)), f"{stage.name} has an utterance twice: {ids}"
    return {r["utt_id"]: r for r in table}


def test_special_files_and_a_broken_manifest_line_beside_real_speech(tmp_path):
    corpus, run = tmp_path / "in", tmp_path / "run"
    corpus.mkdir()
    for name in ("jfk.flac", "LJ002-0020.wav"):
        shutil.copy(SAMPLES / name, corpus / name)
    os.mkfifo(corpus / "fifo.wav")
    os.symlink("/dev/zero", corpus / "zero.wav")
    os.symlink("/dev/urandom", corpus / "urandom.flac")
    listening = socket.socket(socket.AF_UNIX)  # bound and listening all run long
    listening.bind(str(corpus / "sock.wav"))
    listening.listen()
    manifest = corpus / "manifest.jsonl"
    manifest.write_text(
        '{"audio_path": "jfk.flac", "reference": "And so my fellow Americans, ask '
        "not what your country can do for you, ask what you can do for your "
        'country."}\n{"audio_path": "LJ002-0020.wav", "reference": "in eighteen\n'
    )
    try:
        done = subprocess.run(
            _s2s("transcribe", str(corpus), "--out", str(run), "--json"),
            cwd=REPO,
            env=_shared_api_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        listening.close()
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["n_ok"], summary["n_failed"]) == (2, 5)
    ingest = _rows(run, INGEST)
    failed = {k: r["error"] for k, r in ingest.items() if r["status"] == "failed"}
    bad_line = f"{manifest}:2"
    assert failed.pop(bad_line).startswith(f"{manifest} line 2: invalid JSON")
    assert failed == SPECIAL_ERRORS
    transcripts = read_stage(run, TRANSCRIPTS, ["utt_id", "text"]).to_pylist()
    texts = {r["utt_id"]: r["text"] for r in transcripts}
    assert set(texts) == {"jfk", "LJ002-0020"}
    assert "ask not what your country can do for you" in texts["jfk"].lower()
    assert summary["evaluation"]["n_scored"] == 1  # jfk: its manifest line is good


def _blocked_in_fifo_open(pid: int) -> bool:
    """Whether a thread of `pid` sleeps in the kernel's FIFO open."""
    for thread in psutil.Process(pid).threads():
        try:
            with open(f"/proc/{pid}/task/{thread.id}/wchan") as fh:
                if fh.read() in ("wait_for_partner", "fifo_open"):
                    return True
        except OSError:
            continue
    return False


def _flow_run_states(prefect_home) -> list[str]:
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        return [row[0] for row in db.execute("SELECT state_type FROM flow_run")]


@pytest.mark.slow
def test_sigterm_while_a_reader_is_blocked_then_rerun(tmp_path):
    """The worst case: a shard's thread is blocked in open() of a FIFO (the
    file-type check is switched off for this), so Prefect's thread pool can never
    finish. SIGTERM still ends the run within TERMINATION_BOUND_S: the flow run
    marked crashed, the temporary Prefect server gone with it, the run folder
    unlocked. The rerun then has every item exactly once."""
    corpus, run, home = tmp_path / "in", tmp_path / "run", tmp_path / "prefect"
    corpus.mkdir()
    home.mkdir()
    for name in ("jfk.flac", "LJ002-0020.wav"):
        shutil.copy(SAMPLES / name, corpus / name)
    os.mkfifo(corpus / "fifo.wav")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({UNGUARDED_READS_ENV: "1", "PREFECT_HOME": str(home)})
    proc = subprocess.Popen(
        _s2s("ingest", str(corpus), "--out", str(run), "--shard-size", "1"),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not _blocked_in_fifo_open(proc.pid):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no reader blocked on the FIFO"
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("uvicorn" in " ".join(c.cmdline()) for c in children)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=TERMINATION_BOUND_S + 30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert rc == 128 + signal.SIGTERM and took < TERMINATION_BOUND_S, (took, err)
    assert "SIGTERM: stopping" in err
    for child in children:  # the temporary Prefect API server went too
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert _flow_run_states(home) == ["CRASHED"]
    with open(run / ".lock") as lock:  # released: a scheduled rerun can start
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not [p for p in (run / "ingest").iterdir() if ".tmp-" in p.name]

    done = subprocess.run(
        _s2s("ingest", str(corpus), "--out", str(run), "--json"),
        cwd=REPO,
        env=_shared_api_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ingest = _rows(run, INGEST)
    assert {k: r["status"] for k, r in ingest.items()} == {
        "jfk": "ok",
        "LJ002-0020": "ok",
        "fifo": "failed",
    }
    assert ingest["fifo"]["error"] == SPECIAL_ERRORS["fifo"]
    assert set(_rows(run, FEATURES)) == {"jfk", "LJ002-0020"}


SERVE = """
import sys
from flows.ingest_corpus import ingest_corpus

ingest_corpus.serve(name="stuck", parameters={
    "inputs": [sys.argv[1]], "run_dir": sys.argv[2], "shard_size": 1})
"""


@pytest.mark.slow
def test_cancelling_a_stuck_deployment_run(tmp_path):
    """`prefect`'s cancellation of a served deployment's flow run whose reader is
    blocked on a FIFO: Prefect's runner sends SIGTERM, which takes the same path
    as above. The run ends cancelled, its process gone, the folder unlocked."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    corpus, run = tmp_path / "in", tmp_path / "run"
    corpus.mkdir()
    shutil.copy(SAMPLES / "LJ002-0020.wav", corpus / "a.wav")
    os.mkfifo(corpus / "b.wav")
    env = {
        **_shared_api_env(),
        UNGUARDED_READS_ENV: "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(corpus), str(run)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with get_client(sync_client=True) as client:
            deployment = None
            deadline = time.monotonic() + 180
            while deployment is None:
                assert runner.poll() is None and time.monotonic() < deadline
                try:
                    deployment = client.read_deployment_by_name("ingest-corpus/stuck")
                except Exception:  # noqa: BLE001 - not served yet
                    time.sleep(1)
            flow_run = client.create_flow_run_from_deployment(deployment.id)
            while True:
                engines = [
                    p
                    for p in psutil.Process(runner.pid).children(True)
                    if _blocked_in_fifo_open(p.pid)
                ]
                if engines:
                    break
                assert time.monotonic() < deadline, "the flow run never blocked"
                time.sleep(0.5)
            sent = time.monotonic()
            client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
            while not (state := client.read_flow_run(flow_run.id).state).is_final():
                assert time.monotonic() - sent < TERMINATION_BOUND_S + 30
                time.sleep(0.5)
            assert state.is_cancelled(), state
            psutil.wait_procs(engines, timeout=10)
            assert not any(p.is_running() for p in engines)
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        runner.wait(timeout=60)
    with open(run / ".lock") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert set(_rows(run, INGEST)) <= {"a", "b"}  # whole parts, each row once
