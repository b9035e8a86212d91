"""Stage `evaluation`: per-utterance WER/CER, quality flags, corpus numbers with CIs.

Pure functions over pandas DataFrames, and one Prefect task (`evaluate_run`) that
recomputes the stage whole on every run. Deterministic for a given ``seed``.

- Corpus WER is total word errors over total reference words (utterances weighted by
  their length), never the mean of per-utterance WERs. Likewise CER.
- An utterance is *scored* when it has a reference that is non-empty after
  normalisation and its decode succeeded (or ``failed_as_empty`` is set). Unscored
  rows keep NaN in ``wer``/``cer`` and are counted separately in the summary.
- Confidence intervals come from a percentile bootstrap that resamples utterances.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from s2s_models.whisper.decoding import compression_ratio
from tasks.asr.ingest import INGEST
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.metrics import (
    NORMALIZERS,
    duration_bucket,
    duration_bucket_labels,
    has_repeated_ngram,
    normalize_text,
    ratio_with_ci,
    score_pair,
)
from tasks.review.decisions import DECISIONS, corrected_references
from tasks.review.reviews import latest_reviews
from tasks.stage import StageSpec, list_parts, read_stage, write_part
from tasks.stage.parts import prepare_stage

# Flag names, in the order the report lists them.
FLAG_NAMES = (
    "failed_decode",
    "empty_output",
    "speech_skipped",
    "loop_cut",
    "implausible_rate",
    "hallucination_compression",
    "repeated_ngram",
    "no_speech_with_text",
    "chars_per_s_out_of_range",
    "low_confidence",
)
SLICE_COLUMNS = ("speaker", "source_folder", "duration_bucket")
# One row per utterance of the run, recomputed whole on every run (no key).
EVALUATION = StageSpec(
    name="evaluation",
    version=2,  # 2: review, wer_before_review
    columns=(
        ("utt_id", pa.string()),
        ("has_reference", pa.bool_()),
        ("reference_norm", pa.string()),
        ("hypothesis_norm", pa.string()),
        ("wer", pa.float64()),
        ("cer", pa.float64()),
        ("ref_words", pa.int64()),
        ("hits", pa.int64()),
        ("substitutions", pa.int64()),
        ("deletions", pa.int64()),
        ("insertions", pa.int64()),
        ("ref_chars", pa.int64()),
        ("char_errors", pa.int64()),
        ("duration_s", pa.float64()),
        ("speaker", pa.string()),
        ("source_folder", pa.string()),
        ("duration_bucket", pa.string()),
        ("chars_per_s", pa.float64()),
        ("flags", pa.list_(pa.string())),
        ("flagged", pa.bool_()),
        # the reviewer's latest decision (accept | correct | reject), null if none;
        # wer is scored against the corrected reference, a rejected item not at all
        ("review", pa.string()),
        ("wer_before_review", pa.float64()),
    ),
    upstream=TRANSCRIPTS,
)
PER_UTT_COLUMNS = tuple(EVALUATION.schema.names)
_REVIEW_COLUMNS = ("review", "wer_before_review")
_COUNT_COLUMNS = (
    "ref_words",
    "hits",
    "substitutions",
    "deletions",
    "insertions",
    "ref_chars",
    "char_errors",
)
_OPTIONAL_TRANSCRIPT_COLUMNS = {
    "text": None,
    "segments": None,
    "avg_logprob": math.nan,
    "no_speech_prob": math.nan,
    "compression_ratio": math.nan,
    "duration_s": math.nan,
    "error": None,
}


@dataclass(frozen=True)
class EvaluationOptions:
    # "whisper_english" (Whisper's English normaliser) or "basic" (lowercase, no
    # punctuation, single spaces).
    normalizer: str = "whisper_english"
    # Bootstrap resamples for every confidence interval.
    n_bootstrap: int = 1000
    # Seed of the bootstrap generator.
    seed: int = 0
    # Two-sided confidence level of the intervals.
    ci_level: float = 0.95
    # Score failed decodes as empty hypotheses (all deletions) instead of leaving them
    # out of WER. Off by default: an infrastructure failure is not a model error.
    failed_as_empty: bool = False
    # Flag a transcript whose gzip compression ratio exceeds this (Whisper's value).
    max_compression_ratio: float = 2.4
    # Flag an n-gram of this many words ...
    repeat_ngram_n: int = 3
    # ... occurring at least this many times ...
    repeat_ngram_count: int = 4
    # ... with all those starts inside this many words (long texts repeat by chance).
    repeat_ngram_window: int = 60
    # Flag a single word repeated this many times in a row.
    max_word_run: int = 5
    # Flag text produced where the model said "no speech" with this probability.
    max_no_speech_prob: float = 0.6
    # Plausible speaking rate, characters of transcript per second of audio.
    min_chars_per_s: float = 2.0
    max_chars_per_s: float = 30.0
    # The rate is too noisy to flag on clips shorter than this.
    min_duration_for_rate_s: float = 1.0
    # Flag a mean token log-probability below this (Whisper's fallback threshold).
    min_avg_logprob: float = -1.0
    # Upper edges of the duration buckets, seconds, increasing.
    duration_edges_s: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0)
    # Most improved / regressed utterances listed by a comparison (comparison.py).
    n_top: int = 10

    def verify(self) -> None:
        if self.normalizer not in NORMALIZERS:
            raise ValueError(f"normalizer must be one of {NORMALIZERS}")
        if self.n_bootstrap < 1:
            raise ValueError("n_bootstrap must be >= 1")
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError("ci_level must be in (0, 1)")
        if self.repeat_ngram_n < 1 or self.repeat_ngram_count < 2:
            raise ValueError("need repeat_ngram_n >= 1 and repeat_ngram_count >= 2")
        if self.repeat_ngram_window < self.repeat_ngram_count:
            raise ValueError("repeat_ngram_window must be >= repeat_ngram_count")
        if self.max_word_run < 2:
            raise ValueError("max_word_run must be >= 2")
        if not 0.0 <= self.min_chars_per_s < self.max_chars_per_s:
            raise ValueError("need 0 <= min_chars_per_s < max_chars_per_s")
        edges = self.duration_edges_s
        if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError("duration_edges_s must be non-empty and increasing")
        if self.n_top < 0:
            raise ValueError("n_top must be >= 0")


# ---------------------------------------------------------------- per utterance


def _merge_inputs(transcripts: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """Outer-join on utt_id; an utterance with no transcript row counts as failed."""
    for name, df in (("transcripts", transcripts), ("metadata", metadata)):
        if "utt_id" not in df.columns:
            raise ValueError(f"{name} has no utt_id column")
        if df["utt_id"].duplicated().any():
            raise ValueError(f"{name} has duplicate utt_id values")
    if "status" not in transcripts.columns:
        raise ValueError("transcripts has no status column")
    tr = transcripts.copy()
    for col, default in _OPTIONAL_TRANSCRIPT_COLUMNS.items():
        if col not in tr.columns:
            tr[col] = default
    meta = metadata.reindex(
        columns=["utt_id", "reference", "speaker", "source_path", "duration_s"]
    )
    merged = tr.merge(meta, on="utt_id", how="outer", suffixes=("", "_meta"))
    no_row = merged["status"].isna()
    merged["status"] = merged["status"].fillna("failed")
    merged["error"] = merged["error"].astype(object)
    merged.loc[no_row, "error"] = "no transcript row"
    merged["duration_s"] = merged["duration_s"].fillna(merged["duration_s_meta"])
    return merged.sort_values("utt_id", kind="stable").reset_index(drop=True)


def _per_utt_row(row: dict, opts: EvaluationOptions) -> dict[str, Any]:
    """Scores and slicing keys of one merged row (flags are added afterwards)."""
    ref = row["reference"]
    has_reference = isinstance(ref, str)
    ok = row["status"] == "ok"
    text = row["text"] if ok and isinstance(row["text"], str) else ""
    ref_norm = normalize_text(ref, opts.normalizer) if has_reference else None
    hyp_norm = normalize_text(text, opts.normalizer)
    if has_reference and (ok or opts.failed_as_empty):
        counts = score_pair(ref_norm, hyp_norm)
    else:  # unscored: zero counts, undefined rates
        counts = dict.fromkeys(_COUNT_COLUMNS, 0) | {"wer": math.nan, "cer": math.nan}
    duration = float(row["duration_s"])
    source = row["source_path"]
    return {
        "utt_id": row["utt_id"],
        "has_reference": has_reference,
        "reference_norm": ref_norm,
        "hypothesis_norm": hyp_norm,
        **counts,
        "duration_s": duration,
        "speaker": row["speaker"] if isinstance(row["speaker"], str) else None,
        "source_folder": posixpath.dirname(source) if isinstance(source, str) else None,
        "duration_bucket": duration_bucket(duration, opts.duration_edges_s),
        "chars_per_s": len(text.strip()) / duration if duration > 0 else math.nan,
    }


def _max_segment_compression(segments: Any) -> float:
    """Largest per-segment compression ratio (0 when segments carry none)."""
    ratios = [s.get("compression_ratio") for s in (segments or [])]
    return max((r for r in ratios if r is not None and not math.isnan(r)), default=0.0)


# what the decoder recorded in a segment's `flag` -> the utterance's flag
_SEGMENT_FLAG_NAMES = {
    "no_speech": "speech_skipped",
    "undecoded": "speech_skipped",
    "repetitive": "speech_skipped",
    "loop_cut": "loop_cut",
    "implausible_rate": "implausible_rate",
}


def _segment_flags(segments: list) -> list[str]:
    """Utterance flags for what the decoder left out or cut (segment flags)."""
    found = {_SEGMENT_FLAG_NAMES.get(s.get("flag")) for s in segments}
    return [name for name in FLAG_NAMES if name in found]


def _quality_flags(row: dict, opts: EvaluationOptions) -> list[str]:
    """Flag names (see FLAG_NAMES) for one merged row joined with its scores.

    NaN confidence columns never fire a flag (comparisons with NaN are False).
    """
    if row["status"] != "ok":
        return ["failed_decode"]
    text = row["text"] if isinstance(row["text"], str) else ""
    segments = row["segments"]
    segments = list(segments) if isinstance(segments, list | np.ndarray) else []
    flags = _segment_flags(segments)
    if not text.strip():
        # Silence transcribed as nothing is right when the reference is empty too.
        return flags if row["reference_norm"] == "" else ["empty_output", *flags]
    ratio = row["compression_ratio"]
    ratio = compression_ratio(text) if pd.isna(ratio) else ratio
    if max(ratio, _max_segment_compression(segments)) > opts.max_compression_ratio:
        flags.append("hallucination_compression")
    words = normalize_text(text, "basic").split()
    if has_repeated_ngram(
        words,
        opts.repeat_ngram_n,
        opts.repeat_ngram_count,
        opts.repeat_ngram_window,
        opts.max_word_run,
    ):
        flags.append("repeated_ngram")
    if row["no_speech_prob"] > opts.max_no_speech_prob:
        flags.append("no_speech_with_text")
    cps = row["chars_per_s"]
    if row["duration_s"] >= opts.min_duration_for_rate_s and not (
        opts.min_chars_per_s <= cps <= opts.max_chars_per_s
    ):
        flags.append("chars_per_s_out_of_range")
    if row["avg_logprob"] < opts.min_avg_logprob:
        flags.append("low_confidence")
    return flags


def compute_per_utt(
    transcripts: pd.DataFrame, metadata: pd.DataFrame, options: EvaluationOptions
) -> pd.DataFrame:
    """Per-utterance scores and quality flags: the per_utt table of the stage.

    Returns one row per utt_id present in either input, sorted by utt_id, with the
    columns ``PER_UTT_COLUMNS``.
    """
    merged = _merge_inputs(transcripts, metadata)
    # Plain dicts: iterrows builds a Series per row and costs several times more.
    rows = [_per_utt_row(row, options) for row in merged.to_dict("records")]
    per_utt = pd.DataFrame(rows, columns=list(PER_UTT_COLUMNS[:-4]))
    per_utt = per_utt.astype({c: "int64" for c in _COUNT_COLUMNS})
    per_utt["duration_s"] = per_utt["duration_s"].astype(float)
    joined = merged.drop(columns=["duration_s"]).assign(
        reference_norm=per_utt["reference_norm"],
        chars_per_s=per_utt["chars_per_s"],
        duration_s=per_utt["duration_s"],
    )
    per_utt["flags"] = [_quality_flags(r, options) for r in joined.to_dict("records")]
    per_utt["flagged"] = per_utt["flags"].map(bool)
    per_utt["review"] = None
    per_utt["wer_before_review"] = per_utt["wer"]
    return per_utt


def apply_reviews(
    transcripts: pd.DataFrame,
    metadata: pd.DataFrame,
    per_utt: pd.DataFrame,
    reviews: Mapping[str, Mapping],
    options: EvaluationOptions,
) -> pd.DataFrame:
    """per_utt scored again against the reviewed references: 'correct' replaces
    a reference, 'reject' leaves the item out of every score (NaN WER, zero
    counts), 'accept' changes nothing. `wer_before_review` keeps the old WER."""
    refs = dict(zip(metadata["utt_id"], metadata["reference"], strict=True))
    refs, rejected = corrected_references(refs, reviews)
    reviewed = metadata.assign(reference=metadata["utt_id"].map(refs))
    after = compute_per_utt(transcripts, reviewed, options)
    after["wer_before_review"] = per_utt["wer"].to_numpy()
    after["review"] = after["utt_id"].map(
        lambda u: reviews[u]["decision"] if u in reviews else None
    )
    out = after["utt_id"].isin(rejected)
    after.loc[out, ["wer", "cer"]] = math.nan
    after.loc[out, list(_COUNT_COLUMNS)] = 0
    return after


# ---------------------------------------------------------------- summary


def json_value(x: Any) -> Any:
    """Python scalars for JSON; NaN becomes None; dicts and lists recursively."""
    if isinstance(x, dict):
        return {k: json_value(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_value(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _error_arrays(per_utt: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns the summary needs, as numpy arrays of shape (n_utts,)."""
    word_errors = per_utt[["substitutions", "deletions", "insertions"]].sum(axis=1)
    return {
        "scored": per_utt["wer"].notna().to_numpy(),
        "word_errors": word_errors.to_numpy(float),
        "ref_words": per_utt["ref_words"].to_numpy(float),
        "char_errors": per_utt["char_errors"].to_numpy(float),
        "ref_chars": per_utt["ref_chars"].to_numpy(float),
        "flagged": per_utt["flagged"].to_numpy(bool),
        "duration_s": per_utt["duration_s"].to_numpy(float),
    }


def _error_stats(
    arrays: dict[str, np.ndarray], rows: np.ndarray, opts: EvaluationOptions
) -> dict[str, Any]:
    """Counts, corpus WER and CER with bootstrap CIs over the given row indices."""
    scored = rows[arrays["scored"][rows]]
    boot = (opts.n_bootstrap, opts.seed, opts.ci_level)
    word_errors, ref_words = arrays["word_errors"][scored], arrays["ref_words"][scored]
    wer, wer_lo, wer_hi = ratio_with_ci(word_errors, ref_words, *boot)
    char_errors, ref_chars = arrays["char_errors"][scored], arrays["ref_chars"][scored]
    cer, cer_lo, cer_hi = ratio_with_ci(char_errors, ref_chars, *boot)
    return {
        "n": len(rows),
        "n_flagged": int(arrays["flagged"][rows].sum()),
        "audio_hours": float(np.nansum(arrays["duration_s"][rows])) / 3600.0,
        "n_scored": len(scored),
        "ref_words": int(ref_words.sum()),
        "wer": wer,
        "wer_ci_low": wer_lo,
        "wer_ci_high": wer_hi,
        "cer": cer,
        "cer_ci_low": cer_lo,
        "cer_ci_high": cer_hi,
    }


def _slice_rows(per_utt: pd.DataFrame, opts: EvaluationOptions) -> list[dict]:
    """One row per value of each slice column, each with its own WER and CI."""
    order = {b: i for i, b in enumerate(duration_bucket_labels(opts.duration_edges_s))}
    arrays = _error_arrays(per_utt)
    rows = []
    for column in SLICE_COLUMNS:
        codes, values = pd.factorize(per_utt[column].fillna("unknown"))
        members = np.argsort(codes, kind="stable")  # row indices grouped by value
        starts = np.searchsorted(codes[members], np.arange(len(values) + 1))
        groups = {v: members[starts[k] : starts[k + 1]] for k, v in enumerate(values)}
        for value in sorted(groups, key=lambda v: (order.get(v, 99), v)):
            stats = _error_stats(arrays, groups[value], opts)
            rows.append({"slice": column, "value": value, **stats})
    return rows


def summarize_evaluation(
    per_utt: pd.DataFrame, options: EvaluationOptions
) -> dict[str, Any]:
    """JSON-friendly summary of a per_utt table (see compute_evaluation)."""
    failed = per_utt["flags"].map(lambda f: "failed_decode" in f)
    flag_counts = Counter(f for flags in per_utt["flags"] for f in flags)
    scored = per_utt[per_utt["wer"].notna()]
    totals = ("hits", "substitutions", "deletions", "insertions", "char_errors")
    corpus = _error_stats(_error_arrays(per_utt), np.arange(len(per_utt)), options)
    summary = {
        "n_utts": corpus.pop("n"),
        "n_ok": int((~failed).sum()),
        "n_failed": int(failed.sum()),
        "n_with_reference": int(per_utt["has_reference"].sum()),
        "n_empty_reference": int((per_utt["reference_norm"] == "").sum()),
        **corpus,
        "mean_utt_wer": float(scored["wer"].mean()) if len(scored) else math.nan,
        "totals": {c: int(scored[c].sum()) for c in totals},
        "n_flagged_by_flag": {f: flag_counts.get(f, 0) for f in FLAG_NAMES},
        "normalizer": options.normalizer,
        "ci_level": options.ci_level,
        "n_bootstrap": options.n_bootstrap,
        "slices": _slice_rows(per_utt, options),
    }
    return json_value(summary)


def compute_evaluation(
    transcripts: pd.DataFrame,
    metadata: pd.DataFrame,
    options: EvaluationOptions | None = None,
    reviews: Mapping[str, Mapping] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score transcripts against references and flag suspicious outputs.

    Parameters
    ----------
    transcripts : DataFrame, one row per utterance (ASR stage output)
        utt_id, status ('ok' | 'failed'), text, and optionally avg_logprob,
        no_speech_prob, compression_ratio, segments, duration_s, error.
    metadata : DataFrame, one row per utterance (ingest stage output)
        utt_id, reference (str or None), speaker, source_path, duration_s.
    options : EvaluationOptions, default EvaluationOptions()
    reviews : utt_id -> latest review decision row (`tasks.review`), or None.
        References are corrected and rejected items left out of the scores; the
        summary's ``before_review`` holds the corpus WER without the reviews.

    Returns
    -------
    per_utt : DataFrame, one row per utt_id of either input, columns PER_UTT_COLUMNS.
        ``flags`` is a list of FLAG_NAMES entries; ``wer``/``cer`` NaN when unscored.
    summary : dict, JSON-friendly (NaN as None): n_utts, n_ok, n_failed,
        n_with_reference, n_empty_reference, n_scored, ref_words, wer/cer with
        ``*_ci_low``/``*_ci_high``, mean_utt_wer, totals, n_flagged,
        n_flagged_by_flag, audio_hours, and ``slices``: one dict per value of
        speaker / source_folder / duration_bucket with its n, WER and CI.
    """
    options = options or EvaluationOptions()
    options.verify()
    per_utt = compute_per_utt(transcripts, metadata, options)
    if not reviews:
        return per_utt, summarize_evaluation(per_utt, options)
    before = _error_stats(_error_arrays(per_utt), np.arange(len(per_utt)), options)
    per_utt = apply_reviews(transcripts, metadata, per_utt, reviews, options)
    summary = summarize_evaluation(per_utt, options)
    decided = Counter(per_utt["review"].dropna())
    summary["before_review"] = json_value(before)
    summary["n_reviewed"] = {d: decided.get(d, 0) for d in DECISIONS}
    return per_utt, summary


# ---------------------------------------------------------------- stage task

_TRANSCRIPT_READ = [
    "utt_id",
    "text",
    "segments",
    "avg_logprob",
    "no_speech_prob",
    "compression_ratio",
    "temperature",
    "duration_s",
    "decode_seconds",
    "model",
    "status",
    "error",
]
_METADATA_READ = [
    "utt_id",
    "reference",
    "speaker",
    "source_path",
    "duration_s",
    "status",
    "error",
]


def summary_path(run_dir: str) -> str:
    return posixpath.join(str(run_dir), EVALUATION.name, "_summary.json")


@task(name="evaluate-run", cache_policy=NONE)
def evaluate_run(run_dir: str, options: EvaluationOptions) -> dict:
    """Score every transcript of RUN_DIR; write `evaluation/part-00000.parquet`
    (one row per utterance) and `evaluation/_summary.json`; return the summary.

    Cheap next to decoding, so it is recomputed whole on every run: references,
    review decisions (RUN_DIR/reviews) or the normaliser may have changed even
    when no transcript did; the transcripts are only read.
    """
    prepare_stage(run_dir, EVALUATION)  # a killed run's temporary part goes
    transcripts = read_stage(run_dir, TRANSCRIPTS, _TRANSCRIPT_READ).to_pandas()
    metadata = read_stage(run_dir, INGEST, _METADATA_READ).to_pandas()
    reviews = latest_reviews(run_dir, "asr")
    per_utt, summary = compute_evaluation(transcripts, metadata, options, reviews)
    table = pa.Table.from_pandas(per_utt[list(PER_UTT_COLUMNS)], preserve_index=False)
    written = write_part(run_dir, EVALUATION, 0, table)
    for stale in list_parts(run_dir, EVALUATION):
        if stale != written:
            stale.unlink()
    path = summary_path(run_dir)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2)
    os.replace(tmp, path)
    return summary
