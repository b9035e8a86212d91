"""ingest-corpus flow end to end: good and broken files, reruns, growth."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.compute as pc
import pytest

from flows.ingest_corpus import ingest_corpus
from tasks.asr.features import FEATURES, LOG_MEL
from tasks.asr.ingest import INGEST
from tasks.stage import read_stage
from tests.conftest import BAD_AUDIO, SAMPLES
from tests.fixtures.make_bad_audio import EXPECTED

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.required]


def test_mixed_corpus_then_rerun_then_growth(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES, corpus / "good")
    shutil.copytree(BAD_AUDIO, corpus / "bad")
    run = str(tmp_path / "run")

    summary = ingest_corpus(
        [str(corpus / "good"), str(corpus / "bad")], run, shard_size=4
    )
    n_bad = sum(1 for s, _ in EXPECTED.values() if s == "failed")
    assert summary["n_files"] == 6 + len(EXPECTED)
    assert summary["n_failed"] == n_bad
    ingest = read_stage(run, INGEST)
    features = read_stage(run, FEATURES, ["utt_id", "n_frames", "status"])
    ok_ids = set(ingest.filter(pc.equal(ingest["status"], "ok"))["utt_id"].to_pylist())
    assert set(features["utt_id"].to_pylist()) == ok_ids
    assert "jfk" in ok_ids and "bad/empty" not in ok_ids
    # the stored log-mel: one float16 blob per row, read back as (n_mels, n_frames)
    jfk = read_stage(run, FEATURES).to_pandas().set_index("utt_id").loc["jfk"]
    mel = LOG_MEL.read(jfk)
    assert mel.dtype == np.float16 and mel.shape == (80, jfk["n_frames"])
    assert mel.shape[1] == pytest.approx(100 * 11.0, abs=2)  # jfk.flac is 11 s
    assert np.isfinite(mel).all() and -1.5 < mel.min() < mel.max() <= 2.5

    again = ingest_corpus(
        [str(corpus / "good"), str(corpus / "bad")], run, shard_size=4
    )
    assert again["stages"]["ingest"]["n_todo"] == 0
    assert again["stages"]["features"]["n_todo"] == 0

    shutil.copy(SAMPLES / "jfk.flac", corpus / "good" / "jfk_copy.flac")
    (corpus / "bad" / "empty.wav").unlink()
    grown = ingest_corpus(
        [str(corpus / "good"), str(corpus / "bad")], run, shard_size=4
    )
    assert grown["stages"]["ingest"]["n_todo"] == 1
    assert grown["stages"]["features"]["n_todo"] == 1
    ids = read_stage(run, INGEST, ["utt_id"])["utt_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 6 + len(EXPECTED)  # one added, one removed
    assert "jfk_copy" in ids and "bad/empty" not in ids
