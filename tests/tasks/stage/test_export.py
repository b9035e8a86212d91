"""Exporting a run folder to an fsspec destination (object storage stand-in)."""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.asr.ingest import INGEST
from tasks.stage import write_part, write_stage_record
from tasks.stage.export import MANIFEST, export_run, run_files


def _run(tmp_path):
    run = tmp_path / "run"
    rows = [
        {"utt_id": u, "input_key": "k", "request_key": "r", "status": "ok"}
        for u in "abc"
    ]
    write_part(run, INGEST, 0, pa.Table.from_pylist(rows[:2], schema=INGEST.schema))
    write_part(run, INGEST, 1, pa.Table.from_pylist(rows[2:], schema=INGEST.schema))
    write_stage_record(run, INGEST, {"n_todo": 3})
    (run / "report.html").write_text("<html></html>")
    (run / ".lock").write_text("pid 1")  # never exported
    (run / "ingest" / "_corrupt").mkdir()
    (run / "ingest" / "_corrupt" / "part-00009.parquet.1").write_bytes(b"junk")
    return run


def test_export_mirrors_then_copies_only_changes(tmp_path):
    run = _run(tmp_path)
    dest = "memory://s2s-export-test/run1"
    fs, root = fsspec.core.url_to_fs(dest)
    assert run_files(run) == [
        "ingest/_stage.json",
        "ingest/part-00000.parquet",
        "ingest/part-00001.parquet",
        "report.html",
    ]

    first = export_run(run, dest)
    assert (first["uploaded"], first["unchanged"], first["deleted"]) == (4, 0, 0)
    table = pq.read_table(f"{root}/ingest", filesystem=fs)
    assert sorted(table["utt_id"].to_pylist()) == ["a", "b", "c"]
    manifest = json.loads(fs.cat(f"{root}/{MANIFEST}"))
    assert set(manifest["files"]) == set(run_files(run))

    again = export_run(run, dest)  # nothing changed: nothing uploaded
    assert (again["uploaded"], again["unchanged"]) == (0, 4)

    # a resumed run rewrote one part and compaction removed another
    rows = [{"utt_id": "a", "input_key": "k2", "request_key": "r", "status": "ok"}]
    write_part(run, INGEST, 0, pa.Table.from_pylist(rows, schema=INGEST.schema))
    (run / "ingest" / "part-00001.parquet").unlink()
    third = export_run(run, dest)
    assert (third["uploaded"], third["unchanged"], third["deleted"]) == (1, 2, 1)
    table = pq.read_table(f"{root}/ingest", filesystem=fs)
    assert table["input_key"].to_pylist() == ["k2"]
    assert not fs.exists(f"{root}/ingest/part-00001.parquet")


def test_export_of_a_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_run(tmp_path / "nope", "memory://s2s-export-test/nope")
