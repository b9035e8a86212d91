"""Fault injection on real runs: corrupted parts, a failing shard, a full disk.

After each fault, a rerun must end with every utterance present exactly once and
the same rows as a run that never failed.
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

import tasks.features
from flows.ingest_corpus import ingest_corpus
from tasks.stage import list_parts, read_stage
from tests.conftest import SAMPLES

pytestmark = pytest.mark.usefixtures("prefect_harness")
FEATURE_COLS = ["utt_id", "input_key", "n_frames", "peak", "rms_dbfs", "status"]


def _features(run_dir) -> pd.DataFrame:
    table = read_stage(run_dir, "features", FEATURE_COLS).to_pandas()
    return table.sort_values("utt_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run over the samples, to compare against."""
    run = tmp_path_factory.mktemp("reference") / "run"
    ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    return _features(run)


def test_truncated_part_is_redone(tmp_path, reference_run):
    run = tmp_path / "run"
    ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    victim = list_parts(run, "features")[1]
    victim.write_bytes(victim.read_bytes()[:200])  # a crash left half a file
    summary = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    assert summary["stages"]["features"]["n_todo"] == 2
    assert list((run / "features" / "_corrupt").iterdir())
    pd.testing.assert_frame_equal(_features(run), reference_run)


def test_exception_in_one_shard_then_rerun(tmp_path, reference_run, monkeypatch):
    real = tasks.features.compute_features

    def flaky(utt_ids, *args, **kwargs):
        if "jfk" in utt_ids:
            raise OSError("injected worker failure")
        return real(utt_ids, *args, **kwargs)

    monkeypatch.setattr(tasks.features, "compute_features", flaky)
    run = tmp_path / "run"
    summary = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    failed = summary["stages"]["features"]["failed_shards"]
    assert len(failed) == 1 and "injected worker failure" in failed[0]
    assert len(_features(run)) == 4  # the other shards finished

    monkeypatch.setattr(tasks.features, "compute_features", real)
    again = ingest_corpus([str(SAMPLES)], str(run), shard_size=2)
    assert again["stages"]["features"]["n_todo"] == 2
    pd.testing.assert_frame_equal(_features(run), reference_run)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs",
                           str(mount)], capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_then_more_space(small_tmpfs, reference_run):
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
    ids = read_stage(run, "ingest", ["utt_id"])["utt_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 6
    pd.testing.assert_frame_equal(_features(run), reference_run)
    shutil.rmtree(run)
