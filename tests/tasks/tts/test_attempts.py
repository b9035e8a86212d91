"""Seeds of synthesized items: reviews and the closed loop (pure logic)."""

from __future__ import annotations

from tasks.review.decisions import decision_row
from tasks.tts.attempts import (
    LoopOptions,
    attempt_number,
    attempt_row,
    attempt_seed,
    best_seed,
    failing,
    start_seeds,
    summarize_attempts,
)

KEYS = {"a": "ka", "b": "kb", "c": "kc"}


def _row(utt, seed, wer, kept=False, base=0):
    row = attempt_row(utt, KEYS[utt], base, seed, wer, LoopOptions(0.1, 3))
    return {**row, "kept": kept}


def test_seeds_follow_reviews_and_kept_attempts():
    s1, s2 = attempt_seed(5, 1), attempt_seed(5, 2)
    assert (s1, attempt_number(5, s2), attempt_number(5, 123)) == (5, 2, 0)
    reviews = [
        decision_row("r", "tts", "a", "reject", None, "x", "ann", seed=s1),
        decision_row("r", "tts", "b", "accept", None, "x", "ann", seed=777),
    ]
    history = {"c": [_row("c", s1, 0.5, base=5), _row("c", s2, 0.2, True, base=5)]}
    seeds, accepted = start_seeds(KEYS, 5, reviews, history)
    assert seeds == {"a": s2, "b": 777, "c": s2}  # rejected -> next; accepted pinned
    assert accepted == {"b"}


def test_failing_items_get_another_try_until_the_limit():
    history = {"a": [_row("a", 0, 0.5)], "b": [_row("b", 0, 0.5), _row("b", 1, 0.4)]}
    loop = LoopOptions(max_round_trip_wer=0.1, max_attempts=2)
    scores = {"a": 0.5, "b": 0.4, "c": 0.0}
    assert failing(scores, history, set(), loop) == ["a"]  # b has had its 2 tries
    assert failing(scores, history, {"a"}, loop) == []  # accepted: never redone
    assert failing(scores, history, set(), LoopOptions()) == []  # no loop


def test_the_best_attempt_is_kept_and_rejected_seeds_never():
    rows = [_row("a", 0, 0.5), _row("a", 1, 0.2), _row("a", 2, 0.2)]
    rows[1]["attempt"], rows[2]["attempt"] = 2, 3
    assert best_seed(rows, set()) == 1  # lowest WER, earlier on a tie
    assert best_seed(rows, {1}) == 2
    assert best_seed(rows, {0, 1, 2}) is None


def test_summary_counts_passes_per_attempt():
    rows = [
        _row("a", 0, 0.0, True),
        {**_row("b", 0, 0.5), "attempt": 1},
        {**_row("b", 1000003, 0.05, True), "attempt": 2},
        _row("c", 0, 0.9),
        {**_row("c", 1000003, 0.6, True), "attempt": 2},
    ]
    out = summarize_attempts(rows, LoopOptions(0.1, 2))
    assert out["passed_at_attempt"] == {"1": 1, "2": 1}
    assert out["never_passed"] == ["c"]
    assert (out["n_attempts"], out["n_regenerated"]) == (5, 2)
