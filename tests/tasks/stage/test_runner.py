"""The one runner, end to end in Prefect, on the worked example of ARCHITECTURE.md
("How to add a stage"): a `speaking_rate` stage over `transcripts`, declared by
one spec and one compute function."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pyarrow as pa
import pytest
from prefect import flow

from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import ROW_STATUS, StageSpec, fingerprint, read_stage, write_part
from tasks.stage.runner import run_stage

# ---------------------------------------------------------------- the example


@dataclass(frozen=True)
class RateOptions:
    min_duration_s: float = 1.0  # shorter clips get no rate: it would be noise

    def verify(self) -> None:
        if self.min_duration_s < 0:
            raise ValueError("min_duration_s must be >= 0")


def rate_key(transcript_key: str, options: RateOptions) -> str:
    return fingerprint("speaking_rate", transcript_key, asdict(options))


def compute_speaking_rate(rows: Iterable[dict], options: RateOptions) -> list[dict]:
    options.verify()
    out = []
    for row in rows:
        n_words = len((row["text"] or "").split())
        timed = row["duration_s"] >= options.min_duration_s
        out.append(
            {
                "utt_id": row["utt_id"],
                "input_key": row["input_key"],
                "n_words": n_words,
                "words_per_s": n_words / row["duration_s"] if timed else None,
                "status": "ok",
                "error": None,
            }
        )
    return out


SPEAKING_RATE = StageSpec(
    name="speaking_rate",
    version=1,
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("n_words", pa.int32()),
        ("words_per_s", pa.float64()),  # null for clips under min_duration_s
        *ROW_STATUS,
    ),
    upstream=TRANSCRIPTS,
    key=rate_key,
    compute=compute_speaking_rate,
    inputs=("text", "duration_s"),
)


@flow(name="speaking-rate-test")
def speaking_rate_flow(run_dir: str, options: RateOptions = RateOptions()) -> dict:
    return asdict(run_stage(run_dir, SPEAKING_RATE, options, shard_size=2))


# ---------------------------------------------------------------- the tests


def _transcripts(run_dir) -> None:
    rows = [
        {"utt_id": "a", "input_key": "ka", "text": "one two three", "duration_s": 1.5},
        {"utt_id": "b", "input_key": "kb", "text": "four", "duration_s": 0.5},
        {"utt_id": "c", "input_key": "kc", "text": "five six", "duration_s": 2.0},
        {"utt_id": "x", "input_key": "kx", "status": "failed", "error": "bad audio"},
    ]
    rows = [{"status": "ok", **r} for r in rows]
    write_part(run_dir, TRANSCRIPTS, 0, pa.Table.from_pylist(rows, TRANSCRIPTS.schema))


def _rates(run_dir) -> dict:
    table = read_stage(run_dir, SPEAKING_RATE).to_pylist()
    return {r["utt_id"]: (r["n_words"], r["words_per_s"]) for r in table}


def test_a_new_stage_runs_resumes_and_reruns_what_changed(tmp_path, prefect_harness):
    run = str(tmp_path / "run")
    _transcripts(run)
    first = speaking_rate_flow(run)
    assert (first["n_shards"], first["n_todo"], first["n_skipped"]) == (2, 3, 0)
    assert _rates(run) == {"a": (3, 2.0), "b": (1, None), "c": (2, 1.0)}
    record = (tmp_path / "run" / "speaking_rate" / "_stage.json").read_text()
    assert '"upstream": "transcripts"' in record and '"min_duration_s": 1.0' in record

    again = speaking_rate_flow(run)
    assert (again["n_todo"], again["n_skipped"], again["n_removed"]) == (0, 3, 0)

    changed = speaking_rate_flow(run, RateOptions(min_duration_s=0.25))
    assert (changed["n_todo"], changed["n_removed"]) == (3, 3)  # new keys, old gone
    assert _rates(run)["b"] == (1, 2.0)


def test_a_failing_shard_is_reported_and_the_others_are_written(
    tmp_path, prefect_harness, monkeypatch
):
    run = str(tmp_path / "run")
    _transcripts(run)

    def failing(rows, options):
        rows = list(rows)
        if any(r["utt_id"] == "c" for r in rows):
            raise RuntimeError("injected")
        return compute_speaking_rate(rows, options)

    broken = dataclasses.replace(SPEAKING_RATE, compute=failing)
    report = flow(name="broken-rate")(
        lambda: run_stage(run, broken, RateOptions(), shard_size=2)
    )()
    assert len(report.failed_shards) == 1
    assert (
        "speaking_rate shard part 1: RuntimeError: injected" in report.failed_shards[0]
    )
    assert set(_rates(run)) == {"a", "b"}  # the other shard's part is there
    assert speaking_rate_flow(run)["n_todo"] == 1  # a rerun does only the missing one


def test_compute_rejects_bad_options():
    with pytest.raises(ValueError, match="min_duration_s"):
        compute_speaking_rate([], RateOptions(min_duration_s=-1))
