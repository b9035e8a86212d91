"""transcribe-corpus end to end on real speech with the bundled tiny.en weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from flows.transcribe_corpus import transcribe_corpus
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import read_stage
from tests.conftest import BAD_AUDIO, SAMPLES

pytestmark = pytest.mark.required  # a main job: never skipped on CI

GOOD_IDS = {
    "jfk",
    "2412-153948-0000",
    "1995-1837-0001",
    "LJ001-0001",
    "LJ002-0020",
    "sense_and_sensibility_01_austen_64kb-0880",
}


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

    dest = "memory://s2s-flow-test/run"  # object storage stand-in
    summary = transcribe_corpus(inputs, run, asr_shard_size=4, export_to=dest)
    assert summary["n_failed"] == 3
    transcripts = read_stage(run, TRANSCRIPTS).to_pandas().set_index("utt_id")
    assert set(transcripts.index) == GOOD_IDS | {"one_sample"}
    assert (transcripts["status"] == "ok").all()
    assert "ask not what your country can do for you" in transcripts.loc["jfk", "text"]
    ev = summary["evaluation"]
    assert ev["n_scored"] == 6 and ev["wer"] < 0.10  # tiny.en on clean read speech
    assert ev["wer_ci_low"] <= ev["wer"] <= ev["wer_ci_high"]
    report = Path(summary["report"]).read_text()
    assert "<audio" in report and "jfk" in report

    fs, root = fsspec.core.url_to_fs(dest)
    exported = pq.read_table(f"{root}/transcripts", filesystem=fs)
    assert sorted(exported["text"].to_pylist()) == sorted(transcripts["text"])
    assert fs.exists(f"{root}/report.html")

    again = transcribe_corpus(inputs, run, asr_shard_size=4)
    assert again["stages"]["transcripts"]["n_todo"] == 0
    assert again["evaluation"]["wer"] == ev["wer"]

    shutil.copy(SAMPLES / "LJ002-0020.wav", corpus / "good" / "extra.wav")
    grown = transcribe_corpus(inputs, run, asr_shard_size=4)
    assert grown["stages"]["transcripts"]["n_todo"] == 1
    ids = _ids(run, TRANSCRIPTS)
    assert len(ids) == len(set(ids)) == len(GOOD_IDS) + 2


@pytest.mark.usefixtures("prefect_harness")
def test_word_timestamps_and_output_files(tmp_path):
    """Options reach the transcripts (and their key); every output format is
    written, parses, and matches the transcripts; `s2s outputs` rewrites them."""
    import json

    import srt
    import webvtt

    from flows.cli import main
    from s2s_models import TranscribeOptions

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("jfk.flac", "LJ002-0020.wav"):
        shutil.copy(SAMPLES / name, corpus / name)
    run = str(tmp_path / "run")
    options = TranscribeOptions(batch_size=0, word_timestamps=True)
    summary = transcribe_corpus(
        [str(corpus)], run, options=options, output_formats=["srt", "json"]
    )
    assert summary["outputs"] == {"srt": 2, "json": 2}
    rows = read_stage(run, TRANSCRIPTS).to_pylist()
    by_id = {r["utt_id"]: r for r in rows}
    jfk = by_id["jfk"]
    assert '"word_timestamps": true' in jfk["decoding_settings"]
    words = jfk["words"]
    assert "".join(w["word"] for w in words).strip() == jfk["text"].strip()
    assert all(
        a["start_s"] <= b["start_s"] for a, b in zip(words, words[1:], strict=False)
    )
    subs = list(srt.parse((tmp_path / "run/outputs/srt/jfk.srt").read_text()))
    cues = [s for s in jfk["segments"] if s["text"].strip()]
    assert [s.content for s in subs] == [s["text"].strip() for s in cues]
    assert subs[0].start.total_seconds() == pytest.approx(cues[0]["start_s"], abs=1e-3)
    doc = json.loads((tmp_path / "run/outputs/json/jfk.json").read_text())
    assert doc["text"] == jfk["text"].strip() and len(doc["words"]) == len(words)

    # rewritten from the run, without decoding: only the asked format
    shutil.rmtree(tmp_path / "run/outputs")
    assert main(["outputs", run, "--format", "vtt"]) == 0
    vtt = webvtt.read(str(tmp_path / "run/outputs/vtt/LJ002-0020.vtt"))
    assert " ".join(c.text for c in vtt).strip() == by_id["LJ002-0020"]["text"].strip()
    assert not (tmp_path / "run/outputs/srt").exists()
