"""Paired comparison of two evaluations of the same utterances (`s2s report
--compare`, `s2s transcribe --compare`): the WER change with its paired-bootstrap
CI, and the utterances that got better or worse."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tasks.asr.evaluation import EvaluationOptions, json_value
from tasks.metrics import bootstrap_ratios, percentile_ci


def _paired_table(per_utt_a: pd.DataFrame, per_utt_b: pd.DataFrame) -> pd.DataFrame:
    """Rows scored in both tables, suffixed _a/_b; refuses mismatched references."""
    cols = ["utt_id", "reference_norm", "hypothesis_norm", "ref_words", "wer"]
    cols += ["substitutions", "deletions", "insertions"]
    a = per_utt_a.loc[per_utt_a["wer"].notna(), cols]
    b = per_utt_b.loc[per_utt_b["wer"].notna(), cols]
    paired = a.merge(b, on="utt_id", suffixes=("_a", "_b"))
    mismatch = paired["reference_norm_a"] != paired["reference_norm_b"]
    if mismatch.any():
        raise ValueError(
            f"{int(mismatch.sum())} paired utterances have different normalised "
            "references (different normalizer or metadata?), first: "
            f"{paired.loc[mismatch, 'utt_id'].iloc[0]!r}"
        )
    for s in ("a", "b"):
        parts = paired[[f"substitutions_{s}", f"deletions_{s}", f"insertions_{s}"]]
        paired[f"errors_{s}"] = parts.sum(axis=1).astype("int64")
    return paired


def compute_comparison(
    per_utt_a: pd.DataFrame,
    per_utt_b: pd.DataFrame,
    options: EvaluationOptions | None = None,
    *,
    label_a: str = "A",
    label_b: str = "B",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Paired comparison of two evaluations of the same utterances.

    Only utterances scored in both (same utt_id, reference present) are paired.
    ``delta = WER_B - WER_A``: negative means B makes fewer errors. Its CI comes
    from a paired bootstrap (the same resampled utterances for both systems).

    Parameters
    ----------
    per_utt_a, per_utt_b : per_utt DataFrames from compute_evaluation
    options : EvaluationOptions (n_bootstrap, seed, ci_level, n_top are used)
    label_a, label_b : names of the two systems, copied into the summary

    Returns
    -------
    per_utt_delta : DataFrame, one row per paired utterance, sorted from most
        improved to most regressed: utt_id, reference_norm, hypothesis_a,
        hypothesis_b, ref_words, errors_a, errors_b, wer_a, wer_b, wer_delta.
    summary : dict: label_a, label_b, n_paired, n_only_a, n_only_b, wer_a, wer_b,
        delta, delta_ci_low, delta_ci_high, n_better, n_worse, n_same, and
        most_improved / most_regressed (up to n_top rows of per_utt_delta each).
    """
    options = options or EvaluationOptions()
    options.verify()
    p = _paired_table(per_utt_a, per_utt_b)
    table = pd.DataFrame(
        {
            "utt_id": p["utt_id"],
            "reference_norm": p["reference_norm_a"],
            "hypothesis_a": p["hypothesis_norm_a"],
            "hypothesis_b": p["hypothesis_norm_b"],
            "ref_words": p["ref_words_a"],
            "errors_a": p["errors_a"],
            "errors_b": p["errors_b"],
            "wer_a": p["wer_a"],
            "wer_b": p["wer_b"],
            "wer_delta": p["wer_b"] - p["wer_a"],
        }
    )
    change = table["errors_b"] - table["errors_a"]
    table = table.iloc[np.argsort(change.to_numpy(), kind="stable")]
    table = table.reset_index(drop=True)
    change = (table["errors_b"] - table["errors_a"]).to_numpy()
    ids_a, ids_b = set(per_utt_a["utt_id"]), set(per_utt_b["utt_id"])
    summary = {
        "label_a": label_a,
        "label_b": label_b,
        "n_paired": len(table),
        "n_only_a": len(ids_a - ids_b),
        "n_only_b": len(ids_b - ids_a),
        **_paired_wer(table, options),
        "n_better": int((change < 0).sum()),
        "n_worse": int((change > 0).sum()),
        "n_same": int((change == 0).sum()),
        "most_improved": table[change < 0].head(options.n_top).to_dict("records"),
        "most_regressed": table[change > 0][::-1]
        .head(options.n_top)
        .to_dict("records"),
    }
    return table, json_value(summary)


def _paired_wer(table: pd.DataFrame, opts: EvaluationOptions) -> dict[str, float]:
    """Corpus WER of both systems, their difference and its paired bootstrap CI."""
    ref_words = table["ref_words"].to_numpy(float)
    if ref_words.sum() <= 0:
        return dict.fromkeys(
            ("wer_a", "wer_b", "delta", "delta_ci_low", "delta_ci_high"), math.nan
        )
    errors_a = table["errors_a"].to_numpy(float)
    errors_b = table["errors_b"].to_numpy(float)
    wer_a, wer_b = errors_a.sum() / ref_words.sum(), errors_b.sum() / ref_words.sum()
    boot_a, boot_b = bootstrap_ratios(
        [errors_a, errors_b], ref_words, opts.n_bootstrap, opts.seed
    )
    low, high = percentile_ci(boot_b - boot_a, opts.ci_level)
    return {
        "wer_a": wer_a,
        "wer_b": wer_b,
        "delta": wer_b - wer_a,
        "delta_ci_low": low,
        "delta_ci_high": high,
    }
