"""Ingestion: discovery of inputs and one row per input, failures included."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from s2s_models.audio import FlacAudio
from tasks.asr.ingest import (
    INGEST,
    IngestOptions,
    IngestParams,
    compute_ingest,
    ingest_audio,
    keyed_item,
    plan_ingest,
    request_key,
)
from tasks.asr.sources import ReadLimits, SourceItem, discover_inputs
from tasks.codecs import decode_flac
from tests.conftest import BAD_AUDIO, SAMPLES
from tests.fixtures.make_bad_audio import EXPECTED


def _ingest(items: list[SourceItem], limits: ReadLimits = ReadLimits()) -> list[dict]:
    params = IngestParams(IngestOptions(), limits)
    keyed = [keyed_item(i, request_key(i, params.options)) for i in items]
    return compute_ingest(keyed, params)


def test_sample_directory_reads_sidecar_manifest():
    items = discover_inputs([str(SAMPLES)])
    by_id = {i.utt_id: i for i in items}
    assert set(by_id) == {
        "jfk",
        "2412-153948-0000",
        "1995-1837-0001",
        "LJ001-0001",
        "LJ002-0020",
        "sense_and_sensibility_01_austen_64kb-0880",
    }
    assert by_id["jfk"].reference.startswith("And so my fellow Americans")
    assert by_id["LJ002-0020"].speaker == "ljspeech"


def test_stereo_24bit_44k_is_downmixed_and_resampled():
    rows = _ingest([SourceItem("jfk", str(SAMPLES / "jfk.flac"))])
    (row,) = rows
    assert row["status"] == "ok", row["error"]
    assert (row["source_sample_rate"], row["source_channels"]) == (44100, 2)
    assert row["source_format"] == "FLAC/PCM_24"
    audio, rate = decode_flac(row["audio"]["bytes"])
    assert rate == 16000 and audio.ndim == 1
    assert row["num_samples"] == audio.size == pytest.approx(11.0 * 16000, abs=2)
    # Same content: compare with a direct decode + resample of the source.
    import soxr

    src, sr = sf.read(SAMPLES / "jfk.flac", dtype="float32")
    ref = soxr.resample(src.mean(axis=1), sr, 16000)
    n = min(ref.size, audio.size)
    assert np.max(np.abs(ref[:n] - audio[:n])) < 2e-3  # 16-bit FLAC quantisation


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_kind_of_bad_input(name):
    status, error = EXPECTED[name]
    (row,) = _ingest([SourceItem(name, str(BAD_AUDIO / name))])
    assert row["status"] == status, row["error"]
    if error is None:
        assert row["error"] is None and row["num_samples"] >= 1
    else:
        assert error in row["error"]
        # a failed row carries no audio, and it is stored as such by the stage schema
        assert row.get("audio") is None and row.get("num_samples") is None
        (stored,) = pa.Table.from_pylist([row], schema=INGEST.schema).to_pylist()
        assert stored["audio"] is None and stored["status"] == "failed"
        assert stored["error"] == row["error"]


def test_extreme_rates_and_channels_give_sane_audio():
    rows = _ingest(
        [
            SourceItem(n, str(BAD_AUDIO / n))
            for n in ("rate_1khz.wav", "rate_384khz.wav", "eight_channels.wav")
        ]
    )
    durations = [r["num_samples"] / 16000 for r in rows]
    assert durations == pytest.approx([1.0, 0.25, 0.5], abs=0.01)


def test_missing_file_in_manifest_duplicate_ids_and_escape(tmp_path):
    shutil.copy(SAMPLES / "LJ002-0020.wav", tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text(
        "audio_path,utt_id,reference\n"
        "a.wav,x,first\n"
        "a.wav,x,again\n"
        "missing.wav,y,\n"
        "../outside.wav,z,\n"
    )
    items = discover_inputs([str(tmp_path / "m.csv")])
    rows = {r["utt_id"]: r for r in _ingest(items)}
    assert rows["x"]["status"] == "ok" and rows["x"]["reference"] == "first"
    dup = [r for k, r in rows.items() if k.startswith("x#dup")]
    assert len(dup) == 1 and "duplicate utt_id 'x'" in dup[0]["error"]
    assert rows["y"]["status"] == "failed" and "cannot read file" in rows["y"]["error"]
    assert "escapes the manifest folder" in rows["z"]["error"]


def test_manifest_without_audio_path_column(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav"}\n')
    (item,) = discover_inputs([str(tmp_path / "m.jsonl")])
    (row,) = _ingest([item])
    assert row["status"] == "failed" and "lacks column 'audio_path'" in row["error"]


def test_parquet_manifest_and_memory_uri(tmp_path):
    import fsspec
    import pandas as pd

    data = (SAMPLES / "LJ002-0020.wav").read_bytes()
    with fsspec.open("memory://corpus/clip.wav", "wb") as fh:
        fh.write(data)
    pd.DataFrame({"audio_path": ["clip.wav"], "speaker": ["s1"]}).to_parquet(
        tmp_path / "m.parquet"
    )
    with fsspec.open("memory://corpus/m.parquet", "wb") as fh:
        fh.write((tmp_path / "m.parquet").read_bytes())
    items = discover_inputs(["memory://corpus/m.parquet"])
    assert [(i.utt_id, i.path) for i in items] == [("clip", "memory://corpus/clip.wav")]
    (row,) = _ingest(items)
    assert row["status"] == "ok" and row["speaker"] == "s1"
    assert row["source_sha256"] == __import__("hashlib").sha256(data).hexdigest()


def test_symlink_loop_is_not_followed(tmp_path):
    shutil.copy(SAMPLES / "LJ002-0020.wav", tmp_path / "a.wav")
    os.symlink(tmp_path, tmp_path / "loop")
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "dangling.wav")
    rows = {r["utt_id"]: r for r in _ingest(discover_inputs([str(tmp_path)]))}
    assert rows["a"]["status"] == "ok"
    assert rows["dangling"]["status"] == "failed"
    assert len(rows) == 2


def test_unreadable_file_is_a_failed_row(tmp_path):
    """A file with mode 000 is a failed row naming the PermissionError. Only root
    can read it anyway: as root the ingest runs in a forked child that has dropped
    to 'nobody' (modules already imported); as any other user it runs here."""
    path = tmp_path / "secret.wav"
    shutil.copy(SAMPLES / "LJ002-0020.wav", path)
    os.chmod(path, 0)
    os.chmod(tmp_path, 0o755)
    if os.geteuid() != 0:
        (row,) = _ingest([SourceItem("secret", str(path))])
        result = f"{row['status']}|{row['error']}"
    else:
        result = _ingest_as_nobody(path)
    assert result.startswith("failed|") and "PermissionError" in result, result


def _ingest_as_nobody(path) -> str:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgid(65534)
            os.setuid(65534)
            (row,) = _ingest([SourceItem("secret", str(path))])
            os.write(write_fd, f"{row['status']}|{row['error']}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    return os.read(read_fd, 4096).decode()


def test_request_key_changes_with_content(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    item = SourceItem("a", str(path))
    first = request_key(item, IngestOptions())
    buf = io.BytesIO()
    sf.write(buf, np.ones(1600, np.float32) * 0.1, 16000, format="WAV")
    path.write_bytes(buf.getvalue())
    os.utime(path, ns=(1, 1))
    assert request_key(item, IngestOptions()) != first


def test_transcoding_is_streamed_block_by_block(tmp_path):
    """Ingest decodes, downmixes, resamples and FLAC-encodes 30 s at a time: the
    stored audio matches resampling the whole signal at once."""
    import soxr

    sr, seconds = 44100, 75  # three decode blocks
    t = np.arange(sr * seconds) / sr
    left = 0.4 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.3 * t)
    right = 0.3 * np.sin(2 * np.pi * 1330 * t + 1.0)
    stereo = np.stack([left, right], axis=1).astype(np.float32)
    path = tmp_path / "tone.wav"
    sf.write(path, stereo, sr, subtype="FLOAT")
    (row,) = _ingest([SourceItem("tone", str(path))])
    assert row["status"] == "ok", row["error"]
    stored, rate = decode_flac(row["audio"]["bytes"])
    expected = soxr.resample(stereo.mean(axis=1), sr, 16000, quality="HQ")
    assert rate == 16000 and row["num_samples"] == stored.size == expected.size
    assert row["duration_s"] == pytest.approx(seconds)
    assert (row["source_sample_rate"], row["source_channels"]) == (sr, 2)
    np.testing.assert_allclose(stored, expected, atol=2e-4)


def test_downstream_stages_get_short_audio_decoded_and_long_audio_lazy(tmp_path):
    import pyarrow as pa

    from tasks.stage import iter_rows, write_part

    items = discover_inputs([str(SAMPLES)])
    table = pa.Table.from_pylist(_ingest(items), schema=INGEST.schema)
    part = write_part(tmp_path, INGEST, 0, table)
    columns = ["utt_id", "num_samples", "sampling_rate", "audio"]
    (row,) = iter_rows(part, ["LJ002-0020"], columns)
    audio = ingest_audio(row)
    assert isinstance(audio, np.ndarray) and audio.size == row["num_samples"]
    # longer than stream_above_s: handed on undecoded, read slice by slice
    lazy = ingest_audio(row, stream_above_s=1.0)
    assert isinstance(lazy, FlacAudio)
    np.testing.assert_array_equal(np.asarray(lazy), audio)


def test_ingest_shards_are_capped_by_source_bytes(tmp_path, monkeypatch):
    import tasks.asr.ingest

    params = IngestParams()
    plan = plan_ingest(str(tmp_path / "run"), [str(SAMPLES)], params, 256)
    assert [len(s) for s in plan.shards] == [6] and plan.n_todo == 6
    assert plan.shards[0][0]["request_key"] == plan.wanted[plan.shards[0][0]["utt_id"]]
    monkeypatch.setattr(tasks.asr.ingest, "SHARD_MAX_SOURCE_BYTES", 1)
    plan = plan_ingest(str(tmp_path / "run"), [str(SAMPLES)], params, 256)
    assert [len(s) for s in plan.shards] == [1] * 6


def test_special_files_beside_real_speech_are_failed_rows_unopened(tmp_path):
    """A FIFO, a Unix socket and symlinks to /dev/zero and /dev/urandom fail
    with their kind, decided by stat: opening the FIFO would block for good, so
    the test would not finish in time if any of them were opened."""
    import socket
    import threading

    shutil.copy(SAMPLES / "jfk.flac", tmp_path / "jfk.flac")
    os.mkfifo(tmp_path / "fifo.wav")
    os.symlink("/dev/zero", tmp_path / "zero.wav")
    os.symlink("/dev/urandom", tmp_path / "urandom.flac")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.wav"))
    rows: list[dict] = []
    worker = threading.Thread(
        target=lambda: rows.extend(_ingest(discover_inputs([str(tmp_path)]))),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    sock.close()
    assert not worker.is_alive(), "ingest blocked on a special file"
    by_id = {r["utt_id"]: r for r in rows}
    assert by_id["jfk"]["status"] == "ok"
    assert {k: r["error"] for k, r in by_id.items() if k != "jfk"} == {
        "fifo": "not a regular file: a named pipe (FIFO)",
        "sock": "not a regular file: a socket",
        "zero": "not a regular file: a character device (symlink to /dev/zero)",
        "urandom": "not a regular file: a character device (symlink to /dev/urandom)",
    }


def test_file_over_the_size_limit_is_not_read():
    item = SourceItem("jfk", str(SAMPLES / "jfk.flac"))
    (row,) = _ingest([item], ReadLimits(max_bytes=1 << 20))
    assert row["status"] == "failed" and "source_sha256" not in row
    assert row["source_size"] == (SAMPLES / "jfk.flac").stat().st_size
    assert row["error"].startswith("file is 1.1 MiB, over the 1.0 MiB limit")


def test_length_that_disagrees_with_the_header_fails(tmp_path):
    """An MP3 cut to a fifth of its length still claims a minute (its Xing
    header): it fails instead of being stored with 48 s of padding."""
    buf = io.BytesIO()
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000 * 60) / 16000)
    sf.write(buf, tone.astype(np.float32), 16000, format="MP3")
    (tmp_path / "cut.mp3").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 5])
    (row,) = _ingest([SourceItem("cut", str(tmp_path / "cut.mp3"))])
    assert row["status"] == "failed"
    assert "decoded length disagrees with the header" in row["error"]
    assert "the header says 60.0 s" in row["error"]


def test_an_item_that_makes_no_progress_fails_alone(tmp_path):
    """A source whose open() never returns (a FIFO behind an fsspec filesystem,
    as a hung network mount behaves) fails after the stall timeout; the next item
    of the shard is still ingested."""
    import time

    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    class HungFileSystem(LocalFileSystem):
        protocol = "hung"

        def info(self, path, **kwargs):
            return {"name": path, "size": 1000, "type": "file"}

        def _open(self, path, mode="rb", **kwargs):
            return open(str(tmp_path / "fifo"), mode)  # blocks: nobody writes

    os.mkfifo(tmp_path / "fifo")
    fsspec.register_implementation("hung", HungFileSystem, clobber=True)
    items = [
        SourceItem("hung", "hung://corpus/a.wav"),
        SourceItem("jfk", str(SAMPLES / "jfk.flac")),
    ]
    params = IngestParams(limits=ReadLimits(stall_timeout_s=1.0))
    keyed = [keyed_item(items[0], "k1"), keyed_item(items[1], "k2")]
    started = time.monotonic()
    try:
        rows = compute_ingest(keyed, params)
    finally:  # let the abandoned reader go
        os.close(os.open(tmp_path / "fifo", os.O_WRONLY | os.O_NONBLOCK))
    assert time.monotonic() - started < 20
    assert rows[0]["status"] == "failed"
    assert rows[0]["error"].startswith("stalled: no progress for 1 s")
    assert "--stall-timeout 1 s" in rows[0]["error"]
    assert rows[1]["status"] == "ok"
