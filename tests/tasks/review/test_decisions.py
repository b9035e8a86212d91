"""Review decisions: the pure logic, the decisions file checks, and the
append-only reviews stage (two writers at once lose nothing)."""

from __future__ import annotations

import threading

import pyarrow.parquet as pq
import pytest

from tasks.review.decisions import (
    DecisionsError,
    corrected_references,
    decision_row,
    latest_decisions,
    parse_decisions_csv,
    rejected_seeds,
)
from tasks.review.queue import word_diff
from tasks.review.reviews import REVIEWS, append_reviews, latest_reviews, read_reviews
from tasks.stage import list_parts

KNOWN = {"a": "asr", "b": "asr", "t": "tts"}


def test_a_good_file_is_read_in_order():
    data = (
        '\ufeffutt_id,decision,text\na,correct,"Hello, world"\nb,REJECT,\nt,accept,\n'
    ).encode()
    out = parse_decisions_csv(data, KNOWN)
    assert [(d["utt_id"], d["kind"], d["decision"]) for d in out] == [
        ("a", "asr", "correct"),
        ("b", "asr", "reject"),
        ("t", "tts", "accept"),
    ]
    assert out[0]["text"] == "Hello, world"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"utt_id,decision,text\nzz,accept,\n", "line 2: unknown utt_id 'zz'"),
        (b"utt_id,decision,text\na,maybe,\n", "unknown decision 'maybe'"),
        (b"utt_id,decision\na,accept\n", "lacks column(s) text"),
        (b"id,verdict,text\na,accept,\n", "lacks column(s) utt_id, decision"),
        (b"utt_id,decision,text\na,correct,caf\xe9\n", "is not UTF-8 (byte 34"),
        (b"utt_id,decision,text\na,correct,  \n", "needs the corrected text"),
        (b"utt_id,decision,text\nt,correct,new\n", "not corrected"),
        (b"utt_id,decision,text\n", "holds no decisions"),
        (b"utt_id,decision,text\na,accept,\nb,nope,\n", "line 3 (b)"),
    ],
)
def test_a_bad_file_is_refused_with_one_clear_line(data, message):
    with pytest.raises(DecisionsError) as info:
        parse_decisions_csv(data, KNOWN, source="d.csv")
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("d.csv")


def test_the_latest_decision_wins_and_history_stays():
    rows = [
        decision_row("r", "asr", "a", "correct", "first", "ref", "ann", time="2"),
        decision_row("r", "asr", "a", "accept", None, "first", "bob", time="3"),
        decision_row("r", "asr", "b", "reject", None, "x", "ann", time="1"),
        decision_row("r", "tts", "t", "reject", None, "t", "ann", seed=7, time="1"),
        decision_row("r", "tts", "t", "reject", None, "t", "ann", seed=9, time="2"),
    ]
    latest = latest_decisions(rows, "asr")
    assert {u: r["decision"] for u, r in latest.items()} == {
        "a": "accept",
        "b": "reject",
    }
    assert rejected_seeds(rows) == {"t": {7, 9}}
    refs, rejected = corrected_references({"a": "ref", "b": "x", "c": None}, latest)
    assert refs == {"a": "ref", "b": "x", "c": None} and rejected == {"b"}
    fixed = latest_decisions(rows[:1])
    assert corrected_references({"a": "ref"}, fixed)[0] == {"a": "first"}


def test_a_decision_is_checked_when_made():
    with pytest.raises(DecisionsError, match="unknown decision"):
        decision_row("r", "asr", "a", "delete", None, None, "ann")
    with pytest.raises(DecisionsError, match="unknown item kind"):
        decision_row("r", "video", "a", "accept", None, None, "ann")
    row = decision_row("r", "asr", "a", "accept", "ignored", "ref", "ann")
    assert row["text"] is None and row["previous_text"] == "ref"


def test_two_reviewers_writing_at_once_lose_nothing(tmp_path):
    run = tmp_path / "run"
    n_threads, n_each = 4, 10
    barrier = threading.Barrier(n_threads)

    def reviewer(name: str) -> None:
        barrier.wait()
        for i in range(n_each):
            row = decision_row("run", "asr", f"u{i}", "accept", None, "ref", name)
            append_reviews(run, [row])

    threads = [
        threading.Thread(target=reviewer, args=(f"r{k}",)) for k in range(n_threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parts = list_parts(run, REVIEWS)
    assert len(parts) == n_threads * n_each  # one part per write, none replaced
    rows = read_reviews(run)
    assert len(rows) == n_threads * n_each
    assert {(r["reviewer"], r["utt_id"]) for r in rows} == {
        (f"r{k}", f"u{i}") for k in range(n_threads) for i in range(n_each)
    }
    assert set(latest_reviews(run)) == {f"u{i}" for i in range(n_each)}
    schema = pq.read_schema(parts[0])
    assert schema.metadata[b"s2s.stage"] == b"reviews"
    assert not [p for p in (run / "reviews").iterdir() if p.name.startswith(".")]


def test_word_diff_marks_what_changed():
    ops = word_diff("the cat sat on the mat", "The cat on the mat, yes")
    assert [(o["op"], o["ref"], o["hyp"]) for o in ops] == [
        ("equal", "the cat", "The cat"),  # compared without case and punctuation
        ("delete", "sat", ""),
        ("equal", "on the mat", "on the mat,"),
        ("insert", "", "yes"),
    ]
    ops = word_diff("the mat", "a hat today")
    assert [o["op"] for o in ops] == ["replace"]
