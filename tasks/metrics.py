"""Scoring shared by ASR and TTS evaluation: text normalisation, word/character
alignment counts, repetition detection, duration buckets and the bootstrap.

Pure and stateless; ``tasks/asr/evaluation.py`` and ``tasks/tts/evaluation.py``
assemble them into their stages' tables. (Whisper's compression ratio, used for
the hallucination flag, is ``s2s_models.whisper.decoding.compression_ratio``.)
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from functools import lru_cache

import jiwer
import numpy as np

NORMALIZERS = ("whisper_english", "basic")
# Bootstrap index matrices are drawn in chunks of at most this many int64 entries
# (32 MB), so memory stays flat however many utterances or resamples there are.
_BOOTSTRAP_CHUNK_ENTRIES = 4_000_000


# ---------------------------------------------------------------- text


@lru_cache(maxsize=1)
def _whisper_english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def _normalize_basic(text: str) -> str:
    """Lowercase, drop apostrophes, turn other punctuation/symbols into spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['\u2019]", "", text)
    chars = [" " if unicodedata.category(c)[0] in "PS" else c for c in text]
    return " ".join("".join(chars).split())


_LETTER_RUN = re.compile(r"\b[a-z](?: [a-z]\b)+")
_CURRENCY_CENTS = re.compile(r"([$£€]\d+) (\d\d)\b(?! ?%)")


def normalize_text(text: str, normalizer: str) -> str:
    """Normalise one transcript.

    ``"whisper_english"`` is Whisper's English normaliser (spellings, numbers,
    "mr" -> "mister", fillers removed); ``"basic"`` only lowercases, removes
    punctuation and collapses whitespace.
    """
    if normalizer == "basic":
        return _normalize_basic(text)
    if normalizer == "whisper_english":
        text = " ".join(_whisper_english_normalizer()(text).split())
        # "twelve dollars fifty" comes out as "$12 50", "$12.50" as "$12.50"
        text = _CURRENCY_CENTS.sub(r"\1.\2", text)
        # letters read one by one ("the U S A", "F B I") as the acronym ("usa")
        return _LETTER_RUN.sub(lambda m: m[0].replace(" ", ""), text)
    raise ValueError(f"unknown normalizer {normalizer!r}")


def align_words(reference: str, hypothesis: str) -> list[tuple[str, str, str]]:
    """Word alignment of two normalised strings, one entry per aligned position.

    Returns ``(op, ref_word, hyp_word)`` with op in ``equal | substitute | delete |
    insert``; the missing side of a deletion or insertion is ``""``.
    """
    ref_words, hyp_words = reference.split(), hypothesis.split()
    if not ref_words and not hyp_words:
        return []
    out = jiwer.process_words(reference, hypothesis)
    ops: list[tuple[str, str, str]] = []
    for chunk in out.alignments[0]:
        refs = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "delete":
            ops += [("delete", r, "") for r in refs]
        elif chunk.type == "insert":
            ops += [("insert", "", h) for h in hyps]
        else:  # equal and substitute chunks pair words one to one
            ops += [(chunk.type, r, h) for r, h in zip(refs, hyps, strict=True)]
    return ops


def score_pair(ref_norm: str, hyp_norm: str) -> dict[str, float]:
    """Word and character error counts of one normalised (reference, hypothesis).

    Keys: ref_words, hits, substitutions, deletions, insertions, wer, ref_chars,
    char_errors, cer. Characters include the single spaces between words. An empty
    reference leaves wer/cer NaN (undefined) and counts every hypothesis word as an
    insertion.
    """
    n_ref_words = len(ref_norm.split())
    if n_ref_words == 0:
        return {
            "ref_words": 0,
            "hits": 0,
            "substitutions": 0,
            "deletions": 0,
            "insertions": len(hyp_norm.split()),
            "wer": math.nan,
            "ref_chars": 0,
            "char_errors": len(hyp_norm),
            "cer": math.nan,
        }
    w = jiwer.process_words(ref_norm, hyp_norm)
    c = jiwer.process_characters(ref_norm, hyp_norm)
    word_errors = w.substitutions + w.deletions + w.insertions
    char_errors = c.substitutions + c.deletions + c.insertions
    return {
        "ref_words": n_ref_words,
        "hits": w.hits,
        "substitutions": w.substitutions,
        "deletions": w.deletions,
        "insertions": w.insertions,
        "wer": word_errors / n_ref_words,
        "ref_chars": len(ref_norm),
        "char_errors": char_errors,
        "cer": char_errors / len(ref_norm),
    }


# ---------------------------------------------------------------- hallucination cues


def has_repeated_ngram(
    words: list[str], n: int, min_count: int, window: int, max_run: int
) -> bool:
    """True when one word occurs ``max_run`` times in a row, or one n-gram occurs
    ``min_count`` times with all those starts inside ``window`` words.

    The window keeps long transcripts, which repeat common phrases by chance, from
    being flagged; decoder loops repeat within a few words.
    """
    run = 1
    for prev, word in zip(words, words[1:], strict=False):
        run = run + 1 if word == prev else 1
        if run >= max_run:
            return True
    starts: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i in range(len(words) - n + 1):
        starts[tuple(words[i : i + n])].append(i)
    for pos in starts.values():
        for j in range(len(pos) - min_count + 1):
            if pos[j + min_count - 1] - pos[j] < window:
                return True
    return False


# ---------------------------------------------------------------- slicing


def duration_bucket(duration_s: float, edges: tuple[float, ...]) -> str:
    """Label such as ``"<5s"``, ``"5-10s"`` or ``">30s"``; ``"unknown"`` for NaN."""
    if duration_s is None or math.isnan(duration_s):
        return "unknown"
    if duration_s < edges[0]:
        return f"<{edges[0]:g}s"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if duration_s < hi:
            return f"{lo:g}-{hi:g}s"
    return f">{edges[-1]:g}s"


def duration_bucket_labels(edges: tuple[float, ...]) -> list[str]:
    """All bucket labels in increasing order of duration."""
    mids = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
    points = [edges[0] / 2, *mids, edges[-1] + 1.0]
    return [duration_bucket(p, edges) for p in points]


# ---------------------------------------------------------------- bootstrap


def bootstrap_ratios(
    numerators: list[np.ndarray], denominator: np.ndarray, n_bootstrap: int, seed: int
) -> list[np.ndarray]:
    """Resample utterances with replacement; ratio sum(num) / sum(den) per resample.

    Parameters
    ----------
    numerators : list of (n_utts,) arrays, e.g. word errors of systems A and B
    denominator : (n_utts,) array with a positive sum, e.g. reference words
    n_bootstrap, seed : number of resamples, generator seed

    Returns
    -------
    list of (n_bootstrap,) arrays, one per numerator. All numerators share the same
    resampled indices, so differences between them form a paired bootstrap.
    """
    n = len(denominator)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ENTRIES // max(n, 1))
    parts: list[list[np.ndarray]] = [[] for _ in numerators]
    for start in range(0, n_bootstrap, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
        den = denominator[idx].sum(axis=1)  # (chunk,)
        for part, num in zip(parts, numerators, strict=True):
            part.append(num[idx].sum(axis=1) / den)  # (chunk,)
    return [np.concatenate(p) for p in parts]


def percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap samples."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def ratio_with_ci(
    errors: np.ndarray, totals: np.ndarray, n_bootstrap: int, seed: int, level: float
) -> tuple[float, float, float]:
    """Corpus ratio sum(errors) / sum(totals) with its bootstrap CI (NaNs if empty)."""
    errors, totals = np.asarray(errors, float), np.asarray(totals, float)
    if len(totals) == 0 or totals.sum() <= 0:
        return math.nan, math.nan, math.nan
    (samples,) = bootstrap_ratios([errors], totals, n_bootstrap, seed)
    return float(errors.sum() / totals.sum()), *percentile_ci(samples, level)
