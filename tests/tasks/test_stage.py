"""The stage contract: atomic parts, schema checks, corruption, compaction, lock."""

from __future__ import annotations

import multiprocessing as mp
import time

import pyarrow as pa
import pytest

from tasks.schemas import INGEST, SCHEMA_VERSION_KEY
from tasks.stage import (
    RunLock,
    StageError,
    chunked_by,
    compact_stage,
    existing_rows,
    list_parts,
    plan_downstream,
    prepare_stage,
    read_stage,
    run_isolating_failures,
    write_part,
)


def _rows(ids, key="k", status="ok"):
    return pa.Table.from_pylist(
        [
            {
                "utt_id": i,
                "input_key": f"{key}-{i}",
                "request_key": "r",
                "status": status,
            }
            for i in ids
        ],
        schema=INGEST,
    )


def test_write_read_roundtrip_and_schema_metadata(tmp_path):
    write_part(tmp_path, "ingest", 0, _rows(["a", "b"]))
    write_part(tmp_path, "ingest", 3, _rows(["c"]))
    table = read_stage(tmp_path, "ingest")
    assert table.column("utt_id").to_pylist() == ["a", "b", "c"]
    assert table.schema.metadata[SCHEMA_VERSION_KEY] == b"1"
    assert [p.name for p in list_parts(tmp_path, "ingest")] == [
        "part-00000.parquet",
        "part-00003.parquet",
    ]


def test_truncated_part_is_quarantined_and_tmp_removed(tmp_path):
    good = write_part(tmp_path, "ingest", 0, _rows(["a"]))
    bad = write_part(tmp_path, "ingest", 1, _rows(["b"]))
    bad.write_bytes(bad.read_bytes()[:100])  # a crash mid-write of a non-atomic writer
    (tmp_path / "ingest" / ".part-00002.parquet.tmp-123").write_bytes(b"partial")
    parts = prepare_stage(tmp_path, "ingest")
    assert parts == [good]
    assert not list((tmp_path / "ingest").glob(".*.tmp-*"))
    assert len(list((tmp_path / "ingest" / "_corrupt").iterdir())) == 1
    assert set(existing_rows(parts)) == {"a"}


def test_other_schema_version_is_refused(tmp_path):
    old = INGEST.with_metadata({**INGEST.metadata, SCHEMA_VERSION_KEY: b"0"})
    import pyarrow.parquet as pq

    (tmp_path / "ingest").mkdir()
    pq.write_table(_rows(["a"]).cast(old), tmp_path / "ingest" / "part-00000.parquet")
    with pytest.raises(StageError, match="schema version 0"):
        prepare_stage(tmp_path, "ingest")


def test_compaction_keeps_each_wanted_row_once(tmp_path):
    write_part(tmp_path, "ingest", 0, _rows(["a", "b", "c"], key="old"))
    write_part(tmp_path, "ingest", 1, _rows(["b"], key="new"))
    wanted = {"a": "old-a", "b": "new-b"}  # c removed from corpus, b changed
    assert compact_stage(tmp_path, "ingest", wanted) == 2
    table = read_stage(tmp_path, "ingest")
    got = dict(
        zip(table["utt_id"].to_pylist(), table["input_key"].to_pylist(), strict=True)
    )
    assert got == wanted


def test_compaction_keeps_the_newest_of_two_rows_with_one_key(tmp_path):
    write_part(tmp_path, "ingest", 0, _rows(["a", "b"], status="failed"))
    write_part(tmp_path, "ingest", 1, _rows(["a"], status="ok"))  # a retried
    assert compact_stage(tmp_path, "ingest", {"a": "k-a", "b": "k-b"}) == 1
    table = read_stage(tmp_path, "ingest").to_pandas().set_index("utt_id")
    assert table.loc["a", "status"] == "ok" and table.loc["b", "status"] == "failed"


def test_plan_downstream_skips_done_and_failed_rows(tmp_path):
    write_part(tmp_path, "ingest", 0, _rows(["a", "b", "c"]))
    write_part(tmp_path, "ingest", 1, _rows(["d"], status="failed"))
    shards, wanted = plan_downstream(tmp_path, "ingest", "features", str.upper, 2)
    assert set(wanted) == {"a", "b", "c"}  # failed upstream rows are not passed on
    assert [s.utt_ids for s in shards] == [["a", "b"], ["c"]]


def test_plan_downstream_caps_audio_seconds_per_shard(tmp_path):
    rows = _rows(["a", "b", "c", "d"])
    seconds = pa.array([600.0, 600.0, 3600.0, 10.0])
    rows = rows.set_column(
        rows.schema.get_field_index("duration_s"), "duration_s", seconds
    )
    write_part(tmp_path, "ingest", 0, rows)
    shards, _ = plan_downstream(
        tmp_path, "ingest", "features", str.upper, 64, max_shard_seconds=1800
    )
    # a recording longer than the cap gets a shard of its own
    assert [s.utt_ids for s in shards] == [["a", "b"], ["c"], ["d"]]


def test_chunked_by_counts_and_weights():
    assert chunked_by([1, 2, 3, 4, 5], [1, 1, 1, 1, 1], 2, 10) == [[1, 2], [3, 4], [5]]
    assert chunked_by([1, 2, 3], [5, 6, 1], 10, 10) == [[1], [2, 3]]
    assert chunked_by([], [], 3, 1) == []


def test_large_parts_are_written_in_small_row_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import tasks.stage

    monkeypatch.setattr(tasks.stage, "ROW_GROUP_BYTES", 1)
    path = write_part(tmp_path, "ingest", 0, _rows(["a", "b", "c"]))
    assert pq.ParquetFile(path).num_row_groups == 3
    monkeypatch.setattr(tasks.stage, "ROW_GROUP_BYTES", 1 << 20)
    path = write_part(tmp_path, "ingest", 1, _rows(["a", "b", "c"]))
    assert pq.ParquetFile(path).num_row_groups == 1


def _hold_lock(run_dir, ready, release):
    with RunLock(run_dir):
        ready.set()
        release.wait(30)


def test_lock_refuses_second_run_and_frees_on_crash(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(30)
    with pytest.raises(StageError, match="in use by pid"):
        with RunLock(tmp_path):
            pass
    holder.kill()  # a crashed run: no cleanup code runs
    holder.join()
    deadline = time.time() + 10
    while True:
        try:
            with RunLock(tmp_path):
                break
        except StageError:
            assert time.time() < deadline
            time.sleep(0.1)


def test_run_isolating_failures():
    calls = []

    def square(batch):
        calls.append(list(batch))
        if 3 in batch:
            raise ValueError(f"bad item in {batch}")
        return [x * x for x in batch]

    assert run_isolating_failures(square, [1, 2]) == [1, 4]
    out = run_isolating_failures(square, [1, 3, 2])
    assert out[0] == 1 and out[2] == 4
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad item in [3]"
    assert calls == [[1, 2], [1, 3, 2], [1], [3], [2]]  # the batch, then each alone
