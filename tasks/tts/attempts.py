"""Stage `tts_attempts`: every sampling seed a synthesized item was tried with,
its round-trip score, and which attempt the dataset keeps.

The SpeechT5 voices sample (prenet dropout), so an item that came out garbled
can be generated again with another seed. Attempt j of an item (1-based) uses
seed `base + (j - 1) * ATTEMPT_SEED_STEP`. Seeds come from:

* reviews: a rejected item gets the next seed nobody rejected or tried; an
  accepted item keeps the seed it was accepted with and is never redone;
* the closed loop (`s2s synthesize --max-round-trip-wer X --max-attempts N`):
  an item whose round-trip WER is above X gets the next seed, up to N attempts,
  and the attempt with the lowest WER is kept.

Rows are keyed by (utt_id, request_key, seed); the stage is rewritten whole by
the flow after each synthesize run (history of the current texts kept). Pure
functions here; the flow runs the stages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from tasks.review.decisions import latest_decisions, now_iso, rejected_seeds
from tasks.stage import StageSpec

# seed step between attempts: a prime far above the in-generation retries
# (seed + k * 7919, k <= 2, in s2s_models.speecht5.generation), so none overlap
ATTEMPT_SEED_STEP = 1_000_003

TTS_ATTEMPTS = StageSpec(
    name="tts_attempts",
    version=1,
    columns=(
        ("utt_id", pa.string()),
        ("request_key", pa.string()),  # the tts_requests input_key it was made for
        ("attempt", pa.int32()),  # 1-based place of `seed` in the item's seeds
        ("seed", pa.int64()),
        ("wer", pa.float64()),  # round trip; null when the round trip failed
        ("passed", pa.bool_()),  # wer <= max_round_trip_wer (null: no threshold)
        ("kept", pa.bool_()),  # the attempt the dataset holds now
        ("time", pa.string()),
    ),
)


@dataclass(frozen=True)
class LoopOptions:
    # regenerate items whose round-trip WER is above this (None: no closed loop)
    max_round_trip_wer: float | None = None
    # attempts per item at most, the first one included
    max_attempts: int = 1

    def verify(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.max_round_trip_wer is not None and self.max_round_trip_wer < 0:
            raise ValueError("max_round_trip_wer must be >= 0")


def attempt_seed(base: int, attempt: int) -> int:
    return base + (attempt - 1) * ATTEMPT_SEED_STEP


def attempt_number(base: int, seed: int) -> int:
    """The attempt `seed` is for `base`; 0 when it is not one (a pinned seed)."""
    j, rest = divmod(seed - base, ATTEMPT_SEED_STEP)
    return j + 1 if rest == 0 and j >= 0 else 0


def next_seed(base: int, excluded: set[int]) -> int:
    """The first attempt's seed that is not in `excluded` (tried or rejected)."""
    attempt = 1
    while attempt_seed(base, attempt) in excluded:
        attempt += 1
    return attempt_seed(base, attempt)


def current_attempts(rows: Iterable[Mapping], request_keys: Mapping[str, str]):
    """utt_id -> its attempt rows made for the item's current text."""
    out: dict[str, list[Mapping]] = {}
    for row in rows:
        if request_keys.get(row["utt_id"]) == row["request_key"]:
            out.setdefault(row["utt_id"], []).append(row)
    return out


def start_seeds(
    request_keys: Mapping[str, str],
    base: int,
    reviews: list[Mapping],
    attempts: Mapping[str, list[Mapping]],
) -> tuple[dict[str, int], set[str]]:
    """Each item's seed for this run, and the items a reviewer accepted.

    Accepted: the seed it was accepted with. Otherwise the kept attempt's seed
    unless a reviewer rejected it, else the first seed not rejected (or, after a
    reject, not tried)."""
    latest = latest_decisions(reviews, "tts")
    rejected = rejected_seeds(reviews)
    seeds, accepted = {}, set()
    for utt_id in request_keys:
        decision = latest.get(utt_id)
        if decision and decision["decision"] == "accept":
            accepted.add(utt_id)
            if decision.get("seed") is not None:
                seeds[utt_id] = int(decision["seed"])
                continue
        mine = attempts.get(utt_id, [])
        bad = rejected.get(utt_id, set())
        kept = [r["seed"] for r in mine if r["kept"] and r["seed"] not in bad]
        if kept:
            seeds[utt_id] = int(kept[0])
        else:
            tried = {int(r["seed"]) for r in mine} if bad else set()
            seeds[utt_id] = next_seed(base, bad | tried)
    return seeds, accepted


def _wer_or_inf(row: Mapping) -> float:
    wer = row["wer"]
    return math.inf if wer is None or math.isnan(wer) else wer


def failing(
    scores: Mapping[str, float | None],
    attempts: Mapping[str, list[Mapping]],
    accepted: set[str],
    options: LoopOptions,
) -> list[str]:
    """Items to try again: round trip above the threshold (or failed), not
    accepted by a reviewer, fewer than max_attempts tries so far."""
    if options.max_round_trip_wer is None:
        return []
    out = []
    for utt_id, wer in scores.items():
        bad = wer is None or math.isnan(wer) or wer > options.max_round_trip_wer
        tries = len(attempts.get(utt_id, []))
        if bad and utt_id not in accepted and tries < options.max_attempts:
            out.append(utt_id)
    return sorted(out)


def best_seed(rows: list[Mapping], rejected: set[int]) -> int | None:
    """Seed of the lowest-WER attempt (the earlier one on a tie), never one a
    reviewer rejected."""
    usable = [r for r in rows if r["seed"] not in rejected]
    if not usable:
        return None
    return int(min(usable, key=lambda r: (_wer_or_inf(r), r["attempt"]))["seed"])


def attempt_row(
    utt_id: str, request_key: str, base: int, seed: int, wer, options: LoopOptions
) -> dict:
    wer = None if wer is None or math.isnan(wer) else float(wer)
    threshold = options.max_round_trip_wer
    return {
        "utt_id": utt_id,
        "request_key": request_key,
        "attempt": attempt_number(base, seed),
        "seed": seed,
        "wer": wer,
        "passed": None if threshold is None else wer is not None and wer <= threshold,
        "kept": False,
        "time": now_iso(),
    }


def summarize_attempts(rows: list[Mapping], options: LoopOptions) -> dict:
    """How many kept items passed at which attempt (how many tries it took),
    which never passed, and how many attempts were made."""
    tries: dict[str, int] = {}
    for row in rows:
        tries[row["utt_id"]] = tries.get(row["utt_id"], 0) + 1
    passed_at: dict[int, int] = {}
    never = []
    for row in rows:
        if not row["kept"]:
            continue
        if row["passed"]:
            n = row["attempt"] or 1  # 0: a seed a reviewer accepted
            passed_at[n] = passed_at.get(n, 0) + 1
        elif row["passed"] is False:
            never.append(row["utt_id"])
    return {
        "max_round_trip_wer": options.max_round_trip_wer,
        "max_attempts": options.max_attempts,
        "n_attempts": len(rows),
        "n_items": len(tries),
        "n_regenerated": sum(1 for n in tries.values() if n > 1),
        "passed_at_attempt": {str(k): v for k, v in sorted(passed_at.items())},
        "never_passed": sorted(never),
    }
