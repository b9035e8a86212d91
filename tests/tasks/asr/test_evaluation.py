"""Tests for tasks/asr/evaluation.py on hand-made tables with hand-computed numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from tasks.asr.comparison import compute_comparison
from tasks.asr.evaluation import (
    FLAG_NAMES,
    PER_UTT_COLUMNS,
    EvaluationOptions,
    compute_evaluation,
)
from tasks.metrics import (
    align_words,
    duration_bucket,
    duration_bucket_labels,
    has_repeated_ngram,
    normalize_text,
)

BASIC = EvaluationOptions(normalizer="basic", n_bootstrap=200)


def make_inputs(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transcripts and metadata from compact row dicts (utt_id, ref, hyp, ...)."""
    transcripts, metadata = [], []
    for r in rows:
        duration = r.get("duration_s", 3.0)
        transcripts.append(
            {
                "utt_id": r["utt_id"],
                "text": r.get("hyp", ""),
                "language": "en",
                "segments": r.get("segments", []),
                "avg_logprob": r.get("avg_logprob", -0.2),
                "no_speech_prob": r.get("no_speech_prob", 0.01),
                "compression_ratio": r.get("compression_ratio", 1.2),
                "temperature": 0.0,
                "duration_s": duration,
                "decode_seconds": 0.1,
                "model": "tiny",
                "status": r.get("status", "ok"),
                "error": r.get("error"),
            }
        )
        metadata.append(
            {
                "utt_id": r["utt_id"],
                "reference": r.get("ref"),
                "speaker": r.get("speaker", "spk1"),
                "source_path": r.get("source_path", "/data/set1/x.wav"),
                "duration_s": duration,
                "status": "ok",
            }
        )
    return pd.DataFrame(transcripts), pd.DataFrame(metadata)


def test_counts_match_hand_computation():
    tr, md = make_inputs(
        [
            {
                "utt_id": "u1",
                "ref": "The cat sat on the mat.",
                "hyp": "the cat sit on mat",
            }
        ]
    )
    per_utt, summary = compute_evaluation(tr, md, BASIC)
    assert list(per_utt.columns) == list(PER_UTT_COLUMNS)
    row = per_utt.iloc[0]
    # sat -> sit is a substitution, the second "the" is deleted.
    assert (row.hits, row.substitutions, row.deletions, row.insertions) == (4, 1, 1, 0)
    assert row.ref_words == 6 and row.wer == pytest.approx(2 / 6)
    # "the cat sat on the mat" has 22 characters; a -> i plus deleting "the ".
    assert row.ref_chars == 22 and row.char_errors == 5
    assert row.cer == pytest.approx(5 / 22)
    assert summary["wer"] == pytest.approx(2 / 6)
    assert summary["totals"] == {
        "hits": 4,
        "substitutions": 1,
        "deletions": 1,
        "insertions": 0,
        "char_errors": 5,
    }


def test_corpus_wer_is_not_mean_of_utterance_wer():
    ten = "one two three four five six seven eight nine ten"
    tr, md = make_inputs(
        [
            {"utt_id": "long", "ref": ten, "hyp": ten.replace("five", "fife")},
            {"utt_id": "short", "ref": "hello there", "hyp": "yellow hair"},
        ]
    )
    per_utt, summary = compute_evaluation(tr, md, BASIC)
    assert per_utt.set_index("utt_id").wer.to_dict() == pytest.approx(
        {"long": 0.1, "short": 1.0}
    )
    assert summary["wer"] == pytest.approx(3 / 12)
    assert summary["mean_utt_wer"] == pytest.approx(0.55)


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(12)]
    rows = []
    for i in range(40):
        hyp = [w if rng.random() > 0.2 else "x" for w in words]
        rows.append(
            {"utt_id": f"u{i:02d}", "ref": " ".join(words), "hyp": " ".join(hyp)}
        )
    tr, md = make_inputs(rows)
    _, s1 = compute_evaluation(tr, md, BASIC)
    _, s2 = compute_evaluation(tr, md, BASIC)
    _, s3 = compute_evaluation(tr, md, EvaluationOptions(normalizer="basic", seed=7))
    assert s1["wer_ci_low"] < s1["wer"] < s1["wer_ci_high"]
    assert s1["cer_ci_low"] < s1["cer"] < s1["cer_ci_high"]
    assert (s1["wer_ci_low"], s1["wer_ci_high"]) == (
        s2["wer_ci_low"],
        s2["wer_ci_high"],
    )
    assert (s1["wer_ci_low"], s1["wer_ci_high"]) != (
        s3["wer_ci_low"],
        s3["wer_ci_high"],
    )
    # 480 words with ~20% errors: the 95% interval is a few points wide, not 0 or 1.
    assert 0.02 < s1["wer_ci_high"] - s1["wer_ci_low"] < 0.2


def test_slices_have_their_own_wer():
    tr, md = make_inputs(
        [
            {"utt_id": "a", "ref": "a b c d", "hyp": "a b c d", "speaker": "s1"},
            {
                "utt_id": "b",
                "ref": "a b c d",
                "hyp": "a b",
                "speaker": "s2",
                "duration_s": 12.0,
                "source_path": "/data/set2/b.flac",
            },
        ]
    )
    _, summary = compute_evaluation(tr, md, BASIC)
    by_key = {(s["slice"], s["value"]): s for s in summary["slices"]}
    assert by_key[("speaker", "s1")]["wer"] == 0.0
    assert by_key[("speaker", "s2")]["wer"] == 0.5
    assert by_key[("source_folder", "/data/set2")]["n"] == 1
    assert by_key[("duration_bucket", "10-20s")]["wer"] == 0.5
    assert by_key[("duration_bucket", "<5s")]["wer"] == 0.0


LOOP = "thank you " * 12
NORMAL = "and so my fellow americans ask not what your country can do for you"


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"hyp": NORMAL, "duration_s": 5.0}, []),
        (
            {"hyp": LOOP, "compression_ratio": float("nan"), "duration_s": 6.0},
            ["hallucination_compression", "repeated_ngram"],
        ),
        (
            {
                "hyp": NORMAL,
                "segments": [{"compression_ratio": 3.1}],
                "duration_s": 5.0,
            },
            ["hallucination_compression"],
        ),
        ({"hyp": "we we we we we went home", "duration_s": 2.0}, ["repeated_ngram"]),
        (
            {"hyp": NORMAL, "no_speech_prob": 0.9, "duration_s": 5.0},
            ["no_speech_with_text"],
        ),
        ({"hyp": NORMAL, "duration_s": 1.5}, ["chars_per_s_out_of_range"]),
        ({"hyp": "yes", "duration_s": 20.0}, ["chars_per_s_out_of_range"]),
        ({"hyp": "yes", "duration_s": 0.5}, []),
        ({"hyp": NORMAL, "avg_logprob": -1.5, "duration_s": 5.0}, ["low_confidence"]),
        ({"hyp": "  ", "duration_s": 5.0}, ["empty_output"]),
        ({"hyp": "", "status": "failed", "error": "OOM"}, ["failed_decode"]),
        # what the decoder left out or cut is recorded in its segments' flags
        (
            {
                "hyp": NORMAL,
                "duration_s": 5.0,
                "segments": [
                    {"compression_ratio": 1.2, "flag": None},
                    {"compression_ratio": 1.2, "flag": "undecoded"},
                    {"compression_ratio": 1.1, "flag": "loop_cut"},
                ],
            },
            ["speech_skipped", "loop_cut"],
        ),
        (
            {
                "hyp": "",
                "duration_s": 5.0,
                "segments": [{"compression_ratio": 0.0, "flag": "no_speech"}],
            },
            ["empty_output", "speech_skipped"],
        ),
        (
            {
                "hyp": NORMAL,
                "duration_s": 5.0,
                "segments": [{"compression_ratio": 1.3, "flag": "implausible_rate"}],
            },
            ["implausible_rate"],
        ),
    ],
)
def test_quality_flags(row, expected):
    tr, md = make_inputs([{"utt_id": "u", "ref": None, **row}])
    per_utt, summary = compute_evaluation(tr, md, BASIC)
    assert per_utt["flags"][0] == expected
    assert per_utt["flagged"][0] == bool(expected)
    assert summary["n_flagged"] == int(bool(expected))
    assert set(expected) <= set(FLAG_NAMES)


def test_repetition_far_apart_in_long_text_is_not_flagged():
    filler = " ".join(f"w{i}" for i in range(30))
    words = f"one of the {filler} one of the {filler} one of the {filler} one of the"
    assert not has_repeated_ngram(words.split(), 3, 4, 60, 5)
    assert has_repeated_ngram(("one of the " * 4).split(), 3, 4, 60, 5)


def test_normalizers_differ_on_titles_and_numbers():
    ref, hyp = "Mr. Smith paid twenty five dollars.", "Mister Smith paid $25"
    assert normalize_text(ref, "whisper_english") == normalize_text(
        hyp, "whisper_english"
    )
    assert normalize_text(ref, "basic") == "mr smith paid twenty five dollars"
    assert normalize_text(hyp, "basic") == "mister smith paid 25"
    tr, md = make_inputs([{"utt_id": "u", "ref": ref, "hyp": hyp}])
    whisper_wer = compute_evaluation(tr, md, EvaluationOptions(n_bootstrap=10))[0].wer
    basic_wer = compute_evaluation(tr, md, BASIC)[0].wer
    assert whisper_wer[0] == 0.0
    assert basic_wer[0] == pytest.approx(
        4 / 6
    )  # mr, twenty, five, dollars vs mister, 25


def test_empty_reference_after_normalisation_is_counted_not_scored():
    tr, md = make_inputs(
        [
            {"utt_id": "filler", "ref": "Uh.", "hyp": "oh"},
            {"utt_id": "real", "ref": "good morning", "hyp": "good morning"},
            {"utt_id": "noref", "ref": None, "hyp": "hi there"},
        ]
    )
    per_utt, summary = compute_evaluation(tr, md, EvaluationOptions(n_bootstrap=10))
    filler = per_utt.set_index("utt_id").loc["filler"]
    assert filler.reference_norm == "" and math.isnan(filler.wer)
    assert filler.insertions == 1
    assert summary["n_empty_reference"] == 1
    assert summary["n_with_reference"] == 2
    assert summary["n_scored"] == 1 and summary["wer"] == 0.0


def test_missing_transcript_and_failed_decode():
    tr, md = make_inputs(
        [
            {"utt_id": "ok", "ref": "a b", "hyp": "a b"},
            {"utt_id": "bad", "ref": "c d", "status": "failed", "error": "OOM"},
        ]
    )
    md = pd.concat([md, md.iloc[[0]].assign(utt_id="lost")], ignore_index=True)
    per_utt, summary = compute_evaluation(tr, md, BASIC)
    assert summary["n_utts"] == 3 and summary["n_failed"] == 2
    assert summary["wer"] == 0.0 and summary["n_scored"] == 1
    strict = EvaluationOptions(normalizer="basic", failed_as_empty=True)
    _, strict_summary = compute_evaluation(tr, md, strict)
    assert strict_summary["wer"] == pytest.approx(4 / 6)  # 4 deletions / 6 words
    assert strict_summary["totals"]["deletions"] == 4


def test_summary_without_any_reference_has_no_wer():
    tr, md = make_inputs([{"utt_id": "u", "ref": None, "hyp": NORMAL, "duration_s": 5}])
    per_utt, summary = compute_evaluation(tr, md, BASIC)
    assert summary["wer"] is None and summary["n_scored"] == 0
    assert summary["audio_hours"] == pytest.approx(5 / 3600)
    assert not per_utt.has_reference[0]


def test_comparison_counts_and_paired_ci():
    ref = "a b c d e f g h i j"
    rows_a = [
        {"utt_id": "same", "ref": ref, "hyp": ref},
        {"utt_id": "better", "ref": ref, "hyp": "a b c d e"},
        {"utt_id": "worse", "ref": ref, "hyp": ref},
        {"utt_id": "only_a", "ref": ref, "hyp": ref},
    ]
    rows_b = [
        {"utt_id": "same", "ref": ref, "hyp": ref},
        {"utt_id": "better", "ref": ref, "hyp": "a b c d e f g h i"},
        {"utt_id": "worse", "ref": ref, "hyp": "a b c d e f g h i x"},
    ]
    per_a, _ = compute_evaluation(*make_inputs(rows_a), BASIC)
    per_b, _ = compute_evaluation(*make_inputs(rows_b), BASIC)
    delta, summary = compute_comparison(per_a, per_b, BASIC, label_b="new")
    assert (summary["n_better"], summary["n_worse"], summary["n_same"]) == (1, 1, 1)
    assert summary["n_paired"] == 3 and summary["n_only_a"] == 1
    assert summary["wer_a"] == pytest.approx(5 / 30)
    assert summary["wer_b"] == pytest.approx(2 / 30)
    assert summary["delta"] == pytest.approx(-3 / 30)
    assert summary["delta_ci_low"] <= summary["delta"] <= summary["delta_ci_high"]
    assert [r["utt_id"] for r in summary["most_improved"]] == ["better"]
    assert [r["utt_id"] for r in summary["most_regressed"]] == ["worse"]
    assert summary["most_regressed"][0]["hypothesis_b"] == "a b c d e f g h i x"
    assert list(delta.utt_id) == ["better", "same", "worse"]
    assert summary["label_b"] == "new"


def test_comparison_refuses_different_normalisation():
    tr, md = make_inputs([{"utt_id": "u", "ref": "Mr. Smith", "hyp": "mister smith"}])
    per_basic, _ = compute_evaluation(tr, md, BASIC)
    per_whisper, _ = compute_evaluation(tr, md, EvaluationOptions(n_bootstrap=10))
    with pytest.raises(ValueError, match="different normalised references"):
        compute_comparison(per_basic, per_whisper, BASIC)


def test_align_words_pairs_substitutions():
    ops = align_words("the cat sat on the mat", "the bat sat mat here")
    assert [op for op, _, _ in ops].count("equal") == 2
    assert ("substitute", "cat", "bat") in ops
    assert sum(op == "delete" for op, _, _ in ops) == 1


def test_duration_buckets_and_option_checks():
    edges = (5.0, 10.0, 20.0, 30.0)
    assert duration_bucket_labels(edges) == ["<5s", "5-10s", "10-20s", "20-30s", ">30s"]
    assert duration_bucket(10.0, edges) == "10-20s"
    assert duration_bucket(float("nan"), edges) == "unknown"
    with pytest.raises(ValueError):
        EvaluationOptions(normalizer="nope").verify()
    with pytest.raises(ValueError):
        EvaluationOptions(duration_edges_s=(10.0, 5.0)).verify()


def test_summary_of_parquet_round_trip_is_unchanged(tmp_path):
    """The report stage re-reads per_utt from Parquet (flags become numpy arrays)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.asr.evaluation import summarize_evaluation

    tr, md = make_inputs(
        [
            {"utt_id": "a", "ref": "a b c", "hyp": "a b x"},
            {"utt_id": "b", "ref": "a b", "hyp": LOOP, "duration_s": 6.0},
            {"utt_id": "c", "ref": "a", "status": "failed", "error": "boom"},
        ]
    )
    per_utt, summary = compute_evaluation(tr, md, BASIC)
    path = tmp_path / "evaluation.parquet"
    pq.write_table(pa.Table.from_pandas(per_utt, preserve_index=False), path)
    assert summarize_evaluation(pq.read_table(path).to_pandas(), BASIC) == summary
