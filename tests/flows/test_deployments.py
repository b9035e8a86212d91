"""prefect.yaml against a real Prefect server on loopback: deploy, trigger, complete.

Starts `prefect server start` on a free loopback port with its own PREFECT_HOME,
creates the process work pool, deploys every deployment of prefect.yaml, triggers
the nightly transcription (pointed at a small corpus and a temporary run folder),
runs one worker poll, and checks the flow run completed with its Parquet outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import read_stage
from tests.conftest import REPO, SAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.required]
PREFECT = str(Path(sys.executable).with_name("prefect"))
SERVED = ("transcribe-corpus/nightly", "review-run/weekly-review")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "prefect server exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError("prefect server did not become healthy")


@contextlib.contextmanager
def _server(home: Path):
    """A real Prefect server on a free loopback port with its own PREFECT_HOME;
    yields the environment that points clients at it."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_UI_ENABLED="false",
    )
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(api, proc, 180)
        yield {**env, "PREFECT_API_URL": api}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    with _server(tmp_path_factory.mktemp("prefect-server-home")) as env:
        yield env


def _prefect(env, *args, timeout=300) -> str:
    out = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_deploy_trigger_and_complete(prefect_server, tmp_path):
    env = {**prefect_server, "S2S_PROJECT_DIR": str(REPO)}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = ("LJ002-0020.wav", "sense_and_sensibility_01_austen_64kb-0880.wav")
    for name in names:
        shutil.copy(SAMPLES / name, corpus / name)
    manifest = (SAMPLES / "manifest.csv").read_text().splitlines()
    (corpus / "manifest.csv").write_text(
        "\n".join([manifest[0]] + [x for x in manifest if x.startswith(names)]) + "\n"
    )
    run_dir = tmp_path / "nightly"

    _prefect(env, "work-pool", "create", "s2s-process", "--type", "process")
    _prefect(env, "deploy", "--all")
    listed = _prefect(env, "deployment", "ls")
    assert (
        "transcribe-corpus/nightly" in listed and "review-run/weekly-review" in listed
    )

    # option dataclasses travel as JSON mappings of their fields
    params = {
        "inputs": [str(corpus)],
        "run_dir": str(run_dir),
        "options": {"batch_size": 2, "beam_size": 1, "temperatures": [0.0, 0.4]},
        "evaluation": {"normalizer": "basic"},
    }
    _prefect(
        env,
        "deployment",
        "run",
        "transcribe-corpus/nightly",
        "--params",
        json.dumps(params),
    )
    _prefect(env, "worker", "start", "--pool", "s2s-process", "--run-once", timeout=900)

    code = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        runs = await c.read_flow_runs()\n"
        "        print(json.dumps([[r.name, r.state_type.value] for r in runs]))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    states = [state for _, state in json.loads(out.stdout)]
    assert "COMPLETED" in states, out.stdout
    rows = read_stage(run_dir, TRANSCRIPTS, ["utt_id", "decoding_settings"])
    ids = set(rows["utt_id"].to_pylist())
    assert ids == {"LJ002-0020", "sense_and_sensibility_01_austen_64kb-0880"}
    settings = json.loads(rows["decoding_settings"][0].as_py())
    assert settings["batch_size"] == 2 and settings["temperatures"] == [0.0, 0.4]
    assert settings["max_chunk_s"] == 30.0  # fields not given keep their defaults
    summary = json.loads((run_dir / "evaluation" / "_summary.json").read_text())
    assert summary["normalizer"] == "basic"
    # The transcripts are right, scored against the references with the basic
    # normaliser the deployment was given (it leaves "1813" against "eighteen
    # thirteen"). Measured: 4 errors in 11 words (36.4%): "in 1813" (2) and "an ill
    # disposed" heard as "an old-sposed" (2). The bound allows no fifth error.
    assert summary["n_scored"] == 2 and summary["ref_words"] == 11, summary
    assert summary["wer"] < 0.40, summary
    assert (run_dir / "report.html").exists()


def test_s2s_serve_registers_the_scheduled_deployments(tmp_path):
    """`s2s serve` registers every prefect.yaml deployment with its cron schedule
    and keeps serving until stopped (on a server of its own, where nothing was
    deployed to a work pool before)."""
    with _server(tmp_path) as env:
        _serve_and_check(env)


def _serve_and_check(prefect_server: dict) -> None:
    s2s = str(Path(sys.executable).with_name("s2s"))
    proc = subprocess.Popen(
        [s2s, "serve"],
        cwd=REPO,
        env=prefect_server,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    code = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        out = {}\n"
        "        for d in await c.read_deployments():\n"
        "            flow = await c.read_flow(d.flow_id)\n"
        "            crons = [s.schedule.cron for s in d.schedules if s.active]\n"
        "            out[f'{flow.name}/{d.name}'] = [d.work_pool_name, crons]\n"
        "        print(json.dumps(out))\n"
        "asyncio.run(main())\n"
    )
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=prefect_server,
                capture_output=True,
                text=True,
                timeout=120,
            )
            found = json.loads(out.stdout or "{}")
            # Served deployments run in the serving process: no work pool.
            if all(found.get(name, ["pool"])[0] is None for name in SERVED):
                break
            assert time.time() < deadline, out.stdout + out.stderr
            time.sleep(2)
        assert found["transcribe-corpus/nightly"] == [None, ["0 2 * * *"]]
        assert found["review-run/weekly-review"] == [None, ["0 6 * * 1"]]
    finally:
        proc.terminate()
        proc.wait(60)
