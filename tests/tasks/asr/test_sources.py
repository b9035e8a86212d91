"""What ingest refuses before reading (special files, size cap), and manifests that
fail row by row instead of as a whole."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from tasks.asr.sources import (
    DEFAULT_MAX_BYTES,
    check_source,
    discover_inputs,
    read_manifest,
)
from tests.conftest import SAMPLES


@pytest.fixture
def special_files(tmp_path):
    """A real FIFO, a bound Unix socket and symlinks to character devices."""
    os.mkfifo(tmp_path / "fifo.wav")
    os.symlink("/dev/zero", tmp_path / "zero.wav")
    os.symlink("/dev/urandom", tmp_path / "urandom.flac")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.wav"))
    sock.listen()
    yield tmp_path
    sock.close()


def test_only_regular_files_pass(special_files):
    expected = {
        "fifo.wav": "a named pipe (FIFO)",
        "sock.wav": "a socket",
        "zero.wav": "a character device (symlink to /dev/zero)",
        "urandom.flac": "a character device (symlink to /dev/urandom)",
    }
    for name, kind in expected.items():
        problem, size = check_source(str(special_files / name), DEFAULT_MAX_BYTES)
        assert problem == f"not a regular file: {kind}" and size is None
    problem, _ = check_source(str(special_files), DEFAULT_MAX_BYTES)
    assert problem == "not a regular file: a folder"
    assert check_source(str(SAMPLES / "jfk.flac"), DEFAULT_MAX_BYTES) == (
        None,
        (SAMPLES / "jfk.flac").stat().st_size,
    )
    problem, _ = check_source(str(special_files / "nope.wav"), DEFAULT_MAX_BYTES)
    assert problem.startswith("cannot read file: FileNotFoundError")


def test_size_cap():
    size = (SAMPLES / "jfk.flac").stat().st_size
    problem, got = check_source(str(SAMPLES / "jfk.flac"), size - 1)
    assert got == size and "over the 1.1 MiB limit (--max-file-size" in problem
    assert check_source(str(SAMPLES / "jfk.flac"), size)[0] is None


def test_jsonl_manifest_fails_per_line(tmp_path):
    shutil.copy(SAMPLES / "LJ002-0020.wav", tmp_path / "a.wav")
    shutil.copy(SAMPLES / "jfk.flac", tmp_path / "b.flac")
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(
        b'{"audio_path": "a.wav", "reference": "in eighteen thirteen"}\n'
        b'{"audio_path": "oops.wav", "reference": \n'  # cut off
        b"\n"
        b'["a list"]\n'
        b'{"audio_path": "b.flac", "utt_id": "kennedy"}\n'
        b'{"audio_path": "\xff\xfe.wav"}\n'
    )
    items = {i.utt_id: i for i in discover_inputs([str(manifest)])}
    assert set(items) == {
        "a",
        "kennedy",
        f"{manifest}:2",
        f"{manifest}:4",
        f"{manifest}:6",
    }
    assert items["a"].error is None and items["a"].reference == "in eighteen thirteen"
    assert items["kennedy"].error is None
    assert items[f"{manifest}:2"].error.startswith(f"{manifest} line 2: invalid JSON")
    assert items[f"{manifest}:4"].error == f"{manifest} line 4: not a JSON object: " + (
        '["a list"]'
    )
    assert "line 6: not UTF-8" in items[f"{manifest}:6"].error


def test_csv_manifest_fails_per_row(tmp_path):
    shutil.copy(SAMPLES / "LJ002-0020.wav", tmp_path / "a.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(
        b"audio_path,utt_id,reference\n"
        b"a.wav,x,first\n"
        b"a.wav,y,one,too many\n"
        b"a.wav\n"
        b'a.wav,z,"a reference\nover two lines"\n'
        b"a.wav,w,caf\xe9\n"
        b"a.wav,v,last\n"
    )
    columns, rows = read_manifest(str(manifest), DEFAULT_MAX_BYTES)
    assert columns == ["audio_path", "utt_id", "reference"]
    assert rows == [
        (2, {"audio_path": "a.wav", "utt_id": "x", "reference": "first"}),
        (3, "4 fields, the header has 3"),
        (4, "1 fields, the header has 3"),
        (5, {"audio_path": "a.wav", "utt_id": "z",
             "reference": "a reference\nover two lines"}),
        (7, "not UTF-8 (invalid continuation byte at byte 11)"),
        (8, {"audio_path": "a.wav", "utt_id": "v", "reference": "last"}),
    ]  # fmt: skip
    items = {i.utt_id: i for i in discover_inputs([str(manifest)])}
    assert {k for k, i in items.items() if i.error is None} == {"x", "z", "v"}
    assert items[f"{manifest}:3"].error == f"{manifest} line 3: 4 fields, the " + (
        "header has 3"
    )


def test_bad_line_of_a_sidecar_manifest_is_a_failed_row(tmp_path):
    shutil.copy(SAMPLES / "LJ002-0020.wav", tmp_path / "a.wav")
    shutil.copy(SAMPLES / "jfk.flac", tmp_path / "b.flac")
    (tmp_path / "manifest.jsonl").write_text(
        '{"audio_path": "a.wav", "speaker": "lj"}\n{"audio_path": "b.flac",,}\n'
    )
    items = {i.utt_id: i for i in discover_inputs([str(tmp_path)])}
    sidecar = str(tmp_path / "manifest.jsonl")
    assert items["a"].speaker == "lj" and items["b"].error is None
    assert items[f"{sidecar}:2"].error.startswith(f"{sidecar} line 2: invalid JSON")
    assert len(items) == 3


def test_special_file_as_manifest_is_refused_unopened(special_files):
    os.mkfifo(special_files / "manifest.csv")
    (item,) = discover_inputs([str(special_files / "manifest.csv")])
    assert item.error == (
        "cannot read manifest: not a regular file: a named pipe (FIFO)"
    )
