"""The stage contract: atomic parts, schema checks, corruption, compaction, lock."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time

import pyarrow as pa
import pytest

from tasks.stage import (
    ROW_STATUS,
    RunLock,
    StageError,
    StageSpec,
    iter_rows,
    list_parts,
    read_stage,
    run_isolating_failures,
    write_part,
)
from tasks.stage.parts import compact_stage, prepare_stage
from tasks.stage.plan import chunked_by, existing_rows, plan_downstream
from tasks.stage.spec import SCHEMA_VERSION_KEY

# A stage of the contract's own: no model, three columns and the row status.
SOURCE = StageSpec(
    name="source",
    version=1,
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("duration_s", pa.float64()),
        *ROW_STATUS,
    ),
)
DERIVED = StageSpec(
    name="derived",
    version=1,
    columns=(("utt_id", pa.string()), ("input_key", pa.string()), *ROW_STATUS),
    upstream=SOURCE,
    key=lambda upstream_key, params: f"{upstream_key}:{params}",
)


def _rows(ids, key="k", status="ok"):
    return pa.Table.from_pylist(
        [{"utt_id": i, "input_key": f"{key}-{i}", "status": status} for i in ids],
        schema=SOURCE.schema,
    )


def test_write_read_roundtrip_and_schema_metadata(tmp_path):
    write_part(tmp_path, SOURCE, 0, _rows(["a", "b"]))
    write_part(tmp_path, SOURCE, 3, _rows(["c"]))
    table = read_stage(tmp_path, SOURCE)
    assert table.column("utt_id").to_pylist() == ["a", "b", "c"]
    assert table.schema.metadata[SCHEMA_VERSION_KEY] == b"1"
    assert table.schema.metadata[b"s2s.stage"] == b"source"
    assert [p.name for p in list_parts(tmp_path, SOURCE)] == [
        "part-00000.parquet",
        "part-00003.parquet",
    ]


def test_truncated_part_is_quarantined_and_tmp_removed(tmp_path):
    good = write_part(tmp_path, SOURCE, 0, _rows(["a"]))
    bad = write_part(tmp_path, SOURCE, 1, _rows(["b"]))
    bad.write_bytes(bad.read_bytes()[:100])  # a crash mid-write of a non-atomic writer
    (tmp_path / "source" / ".part-00002.parquet.tmp-123").write_bytes(b"partial")
    parts = prepare_stage(tmp_path, SOURCE)
    assert parts == [good]
    assert not list((tmp_path / "source").glob(".*.tmp-*"))
    assert len(list((tmp_path / "source" / "_corrupt").iterdir())) == 1
    assert set(existing_rows(parts)) == {"a"}


def test_other_schema_version_is_refused(tmp_path):
    old = SOURCE.schema.with_metadata(
        {**SOURCE.schema.metadata, SCHEMA_VERSION_KEY: b"0"}
    )
    import pyarrow.parquet as pq

    (tmp_path / "source").mkdir()
    pq.write_table(_rows(["a"]).cast(old), tmp_path / "source" / "part-00000.parquet")
    with pytest.raises(StageError, match="schema version 0"):
        prepare_stage(tmp_path, SOURCE)
    with pytest.raises(StageError, match="use a new run folder"):
        read_stage(tmp_path, SOURCE)


def test_a_part_of_another_stage_is_refused(tmp_path):
    write_part(tmp_path, SOURCE, 0, _rows(["a"]))
    (tmp_path / "derived").mkdir()
    (tmp_path / "source" / "part-00000.parquet").rename(
        tmp_path / "derived" / "part-00000.parquet"
    )
    with pytest.raises(StageError, match="belongs to stage 'source'"):
        prepare_stage(tmp_path, DERIVED)


def test_compaction_keeps_each_wanted_row_once(tmp_path):
    write_part(tmp_path, SOURCE, 0, _rows(["a", "b", "c"], key="old"))
    write_part(tmp_path, SOURCE, 1, _rows(["b"], key="new"))
    wanted = {"a": "old-a", "b": "new-b"}  # c removed from corpus, b changed
    assert compact_stage(tmp_path, SOURCE, wanted) == 2
    table = read_stage(tmp_path, SOURCE)
    got = dict(
        zip(table["utt_id"].to_pylist(), table["input_key"].to_pylist(), strict=True)
    )
    assert got == wanted


def test_compaction_keeps_the_newest_of_two_rows_with_one_key(tmp_path):
    write_part(tmp_path, SOURCE, 0, _rows(["a", "b"], status="failed"))
    write_part(tmp_path, SOURCE, 1, _rows(["a"], status="ok"))  # a retried
    assert compact_stage(tmp_path, SOURCE, {"a": "k-a", "b": "k-b"}) == 1
    table = read_stage(tmp_path, SOURCE).to_pandas().set_index("utt_id")
    assert table.loc["a", "status"] == "ok" and table.loc["b", "status"] == "failed"


def test_plan_downstream_skips_done_and_failed_rows(tmp_path):
    write_part(tmp_path, SOURCE, 0, _rows(["a", "b", "c"]))
    write_part(tmp_path, SOURCE, 1, _rows(["d"], status="failed"))
    plan = plan_downstream(tmp_path, DERIVED, "p1", 2)
    # failed upstream rows are not passed on; keys come from the spec's key function
    assert plan.wanted == {"a": "k-a:p1", "b": "k-b:p1", "c": "k-c:p1"}
    assert [s.utt_ids for s in plan.shards] == [["a", "b"], ["c"]]
    assert plan.sizes == [2, 1] and plan.n_todo == 3

    done = [{"utt_id": "a", "input_key": "k-a:p1", "status": "ok"}]
    write_part(tmp_path, DERIVED, 0, pa.Table.from_pylist(done, DERIVED.schema))
    again = plan_downstream(tmp_path, DERIVED, "p1", 2)
    assert [s.utt_ids for s in again.shards] == [["b", "c"]]
    assert again.n_skipped == 1
    other = plan_downstream(tmp_path, DERIVED, "p2", 2)  # other params: all redone
    assert other.n_todo == 3


def test_plan_downstream_caps_audio_seconds_per_shard(tmp_path):
    rows = _rows(["a", "b", "c", "d"])
    seconds = pa.array([600.0, 600.0, 3600.0, 10.0])
    rows = rows.set_column(
        rows.schema.get_field_index("duration_s"), "duration_s", seconds
    )
    write_part(tmp_path, SOURCE, 0, rows)
    plan = plan_downstream(tmp_path, DERIVED, "p", 64, max_shard_seconds=1800)
    # a recording longer than the cap gets a shard of its own
    assert [s.utt_ids for s in plan.shards] == [["a", "b"], ["c"], ["d"]]
    assert plan.sizes == [2, 1, 1]  # rows, unless the stage weighs by seconds
    timed = dataclasses.replace(DERIVED, weigh_by_seconds=True)
    plan = plan_downstream(tmp_path, timed, "p", 64, max_shard_seconds=1800)
    assert plan.sizes == [1200.0, 3600.0, 10.0]


def test_iter_rows_reads_the_wanted_rows_group_by_group(tmp_path, monkeypatch):
    import tasks.stage.parts

    monkeypatch.setattr(tasks.stage.parts, "ROW_GROUP_BYTES", 1)  # a group per row
    path = write_part(tmp_path, SOURCE, 0, _rows(["a", "b", "c", "d"]))
    rows = list(iter_rows(path, ["d", "b"], ["utt_id", "input_key"]))
    assert rows == [
        {"utt_id": "b", "input_key": "k-b"},
        {"utt_id": "d", "input_key": "k-d"},
    ]  # part order, only the columns asked for


def test_chunked_by_counts_and_weights():
    assert chunked_by([1, 2, 3, 4, 5], [1, 1, 1, 1, 1], 2, 10) == [[1, 2], [3, 4], [5]]
    assert chunked_by([1, 2, 3], [5, 6, 1], 10, 10) == [[1], [2, 3]]
    assert chunked_by([], [], 3, 1) == []


def test_large_parts_are_written_in_small_row_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import tasks.stage.parts

    monkeypatch.setattr(tasks.stage.parts, "ROW_GROUP_BYTES", 1)
    path = write_part(tmp_path, SOURCE, 0, _rows(["a", "b", "c"]))
    assert pq.ParquetFile(path).num_row_groups == 3
    monkeypatch.setattr(tasks.stage.parts, "ROW_GROUP_BYTES", 1 << 20)
    path = write_part(tmp_path, SOURCE, 1, _rows(["a", "b", "c"]))
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
