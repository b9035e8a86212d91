"""Fault injection on real runs: corrupted parts, a failing shard, a full disk.

After each fault, a rerun must end with every utterance present exactly once and
the same rows as a run that never failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest

import tasks.stage.runner
from flows.ingest_corpus import ingest_corpus
from flows.transcribe_corpus import transcribe_corpus
from tasks.asr.evaluation import EVALUATION
from tasks.asr.features import FEATURES
from tasks.asr.ingest import INGEST
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import list_parts, read_stage
from tasks.stage.failpoints import DISK_BYTES_ENV, FAILPOINT_ENV
from tests.conftest import REPO, SAMPLES, mount_tmpfs

pytestmark = pytest.mark.usefixtures("prefect_harness")
FEATURE_COLS = ["utt_id", "input_key", "n_frames", "peak", "rms_dbfs", "status"]


def _features(run_dir) -> pd.DataFrame:
    table = read_stage(run_dir, FEATURES, FEATURE_COLS).to_pandas()
    return table.sort_values("utt_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run over the samples, to compare against."""
    run = tmp_path_factory.mktemp("reference") / "run"
    ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    return _features(run)


@pytest.mark.required
def test_truncated_part_is_redone(tmp_path, reference_run):
    run = tmp_path / "run"
    ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    victim = list_parts(run, FEATURES)[1]
    victim.write_bytes(victim.read_bytes()[:200])  # a crash left half a file
    summary = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    assert summary["stages"]["features"]["n_todo"] == 2
    assert list((run / "features" / "_corrupt").iterdir())
    pd.testing.assert_frame_equal(_features(run), reference_run)


@pytest.mark.required
def test_exception_in_one_shard_then_rerun(tmp_path, reference_run, monkeypatch):
    real = tasks.stage.runner.write_rows

    def flaky(run_dir, stage, index, rows):
        if stage is FEATURES and any(r["utt_id"] == "jfk" for r in rows):
            raise OSError("injected worker failure")
        return real(run_dir, stage, index, rows)

    monkeypatch.setattr(tasks.stage.runner, "write_rows", flaky)
    run = tmp_path / "run"
    summary = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    failed = summary["stages"]["features"]["failed_shards"]
    assert len(failed) == 1 and "injected worker failure" in failed[0]
    assert len(_features(run)) == 4  # the other shards finished

    monkeypatch.setattr(tasks.stage.runner, "write_rows", real)
    again = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    assert again["stages"]["features"]["n_todo"] == 2
    pd.testing.assert_frame_equal(_features(run), reference_run)


@pytest.mark.required
def test_disk_full_at_the_write_then_more_space(tmp_path, reference_run, monkeypatch):
    """The full disk without mount privilege: every part write fails with ENOSPC
    once the run folder passes 512 KiB (`S2S_FAILPOINT_DISK_BYTES`; the ingest
    parts of the samples take 870 kB in three parts), as the small tmpfs below
    does where mounting is allowed; then the disk "grows"."""
    run = tmp_path / "run"
    monkeypatch.setenv(DISK_BYTES_ENV, str(512 * 1024))
    summary = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    errors = [e for s in summary["stages"].values() for e in s["failed_shards"]]
    assert errors and all("No space left on device" in e for e in errors), errors
    leftovers = [p.name for p in (run / "ingest").iterdir() if ".tmp-" in p.name]
    assert leftovers == []  # no half-written part is left behind as data
    assert len(read_stage(run, INGEST, ["utt_id"])) < 6  # not every part fitted
    monkeypatch.delenv(DISK_BYTES_ENV)
    ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    ids = read_stage(run, INGEST, ["utt_id"])["utt_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 6
    pd.testing.assert_frame_equal(_features(run), reference_run)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "disk"
    mount_tmpfs(mount, "size=1200k")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_then_more_space(small_tmpfs, reference_run):
    """The same on a real 1200k tmpfs, where this machine lets the test mount one:
    the kernel's ENOSPC, for every file the run writes."""
    run = small_tmpfs / "run"
    summary = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    assert any(s["failed_shards"] for s in summary["stages"].values())
    assert "No space left" in " ".join(
        e for s in summary["stages"].values() for e in s["failed_shards"]
    )
    leftovers = [p.name for p in (run / "ingest").iterdir() if ".tmp-" in p.name]
    assert leftovers == []  # no half-written part is left behind as data
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    ids = read_stage(run, INGEST, ["utt_id"])["utt_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 6
    pd.testing.assert_frame_equal(_features(run), reference_run)
    shutil.rmtree(run)


# Columns that must match an uninterrupted run exactly (timings are left out).
STABLE_COLUMNS = {
    INGEST: ["utt_id", "input_key", "source_sha256", "duration_s", "status"],
    FEATURES: FEATURE_COLS,
    TRANSCRIPTS: ["utt_id", "input_key", "text", "avg_logprob", "status"],
    EVALUATION: ["utt_id", "reference_norm", "hypothesis_norm", "wer", "cer"],
}


def _stage_frames(run_dir) -> dict[str, pd.DataFrame]:
    frames = {}
    for stage, cols in STABLE_COLUMNS.items():
        frame = read_stage(run_dir, stage, cols).to_pandas()
        frames[stage.name] = frame.sort_values("utt_id").reset_index(drop=True)
    return frames


@pytest.mark.slow
@pytest.mark.required
def test_sigkill_in_each_stage_then_resume(tmp_path):
    """SIGKILL the real `s2s transcribe` process right after its first part of each
    stage in turn (ingest, features, transcripts, evaluation), then rerun: every
    stage ends with each utterance once and the rows of an uninterrupted run."""
    from prefect.settings import PREFECT_API_URL

    reference = tmp_path / "reference"
    transcribe_corpus([str(SAMPLES)], str(reference), shard_size=2, asr_shard_size=2)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "flows.cli", "transcribe", str(SAMPLES)]
    cmd += ["--out", str(run), "--shard-size", "2", "--asr-shard-size", "2", "--json"]
    # The runs share the session's Prefect server instead of starting their own.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    for stage in STABLE_COLUMNS:
        fail_env = {**env, FAILPOINT_ENV: f"{stage.name}:1"}
        killed = subprocess.run(
            cmd, cwd=REPO, env=fail_env, capture_output=True, text=True, timeout=600
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert list_parts(run, stage), f"no {stage.name} part before the kill"
        assert not (run / "report.html").exists()
    done = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["stages"]["ingest"]["n_todo"] == 0  # finished by earlier reruns
    got, want = _stage_frames(run), _stage_frames(reference)
    for name in got:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
    assert (run / "report.html").exists()


@pytest.mark.slow
@pytest.mark.required
def test_rerun_with_nothing_to_do_exits_cleanly(tmp_path):
    """A rerun of a finished run ends while the background model load may still be
    inside torch. It must exit 0: with the loader as a daemon thread the interpreter
    aborted under it ("terminate called without an active exception", exit -6) in
    2 of 6 such reruns against a shared Prefect server."""
    from prefect.settings import PREFECT_API_URL

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "flows.cli", "transcribe", str(SAMPLES)]
    cmd += ["--out", str(run), "--json"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    for attempt in range(6):  # the first run does the work, the others find it done
        done = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (attempt, done.stderr[-2000:])
        if attempt:
            stages = json.loads(done.stdout)["stages"]
            assert stages["transcripts"]["n_todo"] == 0, stages["transcripts"]
