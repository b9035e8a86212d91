"""Report stage: one self-contained HTML review page, plus a Markdown summary and
table rows for Prefect artifacts.

The page needs no network: CSS and the one small script are inline, charts are
inline SVG, audio clips are base64 data URIs, and a Content-Security-Policy meta tag
forbids every remote fetch. All text from the data is HTML-escaped.
"""

from __future__ import annotations

import json
import math
import os

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from tasks.asr.comparison import compute_comparison
from tasks.asr.evaluation import EVALUATION, FLAG_NAMES, summary_path
from tasks.asr.ingest import INGEST
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.report_assets import (
    CSS,
    JS,
    LEGEND,
    audio_player,
    ci_text,
    diff_html,
    duration_text,
    esc,
    flags_html,
    num,
    pct,
    table_html,
)
from tasks.report_charts import (
    no_reference_figures,
    stage_rtfx,
    throughput_figure,
    wer_figures,
)
from tasks.stage import list_parts, read_stage

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "media-src data:; img-src data:"
)
_TRANSCRIPT_COLUMNS = (
    "text",
    "avg_logprob",
    "no_speech_prob",
    "compression_ratio",
    "decode_seconds",
    "error",
    "model",
)


# ---------------------------------------------------------------- sections


def _cards(summary: dict, run_info: dict) -> str:
    level = round(100 * summary.get("ci_level", 0.95))
    cards = []
    if summary.get("wer") is not None:
        after = " after review" if summary.get("before_review") else ""
        for name in ("wer", "cer"):
            ci = ci_text(summary[f"{name}_ci_low"], summary[f"{name}_ci_high"])
            label = f"{name.upper()}{after} ({level}% CI {ci})"
            cards.append((pct(summary[name]), label))
        n_ref = summary["n_with_reference"]
        cards.append((f"{summary['n_scored']}", f"scored ({n_ref} with reference)"))
    if summary.get("before_review"):
        cards.append((pct(summary["before_review"]["wer"]), review_text(summary)))
    cards += [
        (f"{summary['n_utts']}", f"utterances ({summary['n_failed']} failed)"),
        (duration_text(summary["audio_hours"] * 3600.0), "audio"),
        (f"{summary['n_flagged']}", "flagged utterances"),
    ]
    rtfx = stage_rtfx(run_info, summary).get("total")
    if rtfx is not None:
        cards.append((f"{rtfx:.1f}&times;", "real-time factor (RTFx), whole run"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{v}</div><div class="l">{esc(lab)}</div>'
            "</div>"
            for v, lab in cards
        )
        + "</div>"
    )


def _utterance_card(row: pd.Series, clip: bytes | None, max_clip_bytes: int) -> str:
    head = [f"<b>{esc(row['utt_id'])}</b>", f"{row['duration_s']:.1f} s"]
    if not math.isnan(row["wer"]):
        head.append(f"WER {pct(row['wer'])} ({row['ref_words']} words)")
    if not pd.isna(row["avg_logprob"]):
        head.append(f"avg_logprob {row['avg_logprob']:.2f}")
    if clip is not None and len(clip) <= max_clip_bytes:
        head.append(audio_player(clip))
    elif clip is not None:
        head.append(f'<span class="muted">clip not embedded ({len(clip)} bytes)</span>')
    head.append(flags_html(row["flags"]))
    if row["has_reference"] and row["reference_norm"]:
        diff = diff_html(row["reference_norm"], row["hypothesis_norm"])
        body = f'<div class="diff">{diff}</div>'
    else:
        body = f'<div class="hyp">{esc(row["text"])}</div>'
    return f'<div class="utt"><div class="utt-head">{" ".join(head)}</div>{body}</div>'


def _shown_rows(table: pd.DataFrame, n_worst: int) -> pd.DataFrame:
    """Rows of the worst list: highest WER above 0 or, with no references at all,
    the lowest avg_logprob among decoded utterances."""
    if table["wer"].notna().any():
        shown = table[table["wer"] > 0]
        return shown.sort_values(["wer", "ref_words"], ascending=False).head(n_worst)
    decoded = table[~table["flags"].map(lambda f: "failed_decode" in f)]
    decoded = decoded[decoded["avg_logprob"].notna()]
    return decoded.sort_values("avg_logprob").head(n_worst)


def shown_utt_ids(
    per_utt: pd.DataFrame, transcripts: pd.DataFrame, n_worst: int
) -> list[str]:
    """utt_ids whose clips ``render_report`` embeds, in page order; read only these
    clips from storage."""
    table = _merge_transcripts(per_utt, transcripts)
    return _shown_rows(table, n_worst)["utt_id"].tolist()


def _worst_section(table, audio_clips, n_worst, max_clip_bytes) -> str:
    shown = _shown_rows(table, n_worst)
    if table["wer"].notna().any():
        title, note = f"The {len(shown)} worst utterances (WER above 0)", LEGEND
    else:
        title = f"The {len(shown)} least confident utterances"
        note = '<p class="muted">No references: hypotheses shown as decoded.</p>'
    cards = [
        _utterance_card(r, audio_clips.get(r["utt_id"]), max_clip_bytes)
        for _, r in shown.iterrows()
    ]
    return f"<h2>{esc(title)}</h2>{note}" + ("".join(cards) or "<p>None.</p>")


def _flagged_section(table: pd.DataFrame) -> str:
    flagged = table[
        table["flagged"] & ~table["flags"].map(lambda f: "failed_decode" in f)
    ]
    rows = [
        [
            esc(r["utt_id"]),
            flags_html(r["flags"]),
            num(r["duration_s"], ".1f"),
            num(r["chars_per_s"], ".1f"),
            num(r["avg_logprob"]),
            num(r["no_speech_prob"]),
            num(r["compression_ratio"]),
            f'<span class="hyp">{esc(str(r["text"])[:300])}</span>',
        ]
        for _, r in flagged.iterrows()
    ]
    headers = [
        "utt_id",
        "flags",
        "duration s",
        "chars/s",
        "avg_logprob",
        "no_speech_prob",
        "compression",
        "hypothesis (first 300 chars)",
    ]
    return f"<h2>Flagged utterances ({len(flagged)})</h2>" + table_html(
        headers, rows, numeric={2, 3, 4, 5, 6}
    )


def _index_section(table: pd.DataFrame, max_rows: int) -> str:
    """Every utterance (worst WER, then lowest confidence, first), up to max_rows."""
    ranked = table.assign(_wer=table["wer"].fillna(-1.0)).sort_values(
        ["_wer", "avg_logprob", "utt_id"], ascending=[False, True, True]
    )
    rows = []
    for _, r in ranked.head(max_rows).iterrows():
        scored = not math.isnan(r["wer"])
        counts = f"{r['substitutions']}/{r['deletions']}/{r['insertions']}"
        rows.append(
            [
                esc(r["utt_id"]),
                num(r["duration_s"], ".1f"),
                pct(r["wer"]) if scored else "",
                str(r["ref_words"]) if scored else "",
                counts if scored else "",
                num(r["avg_logprob"]),
                flags_html(r["flags"]),
            ]
        )
    headers = ["utt_id", "duration s", "WER", "ref words", "S/D/I", "avg_logprob"]
    cut = f" (first {max_rows} of {len(table)})" if len(table) > max_rows else ""
    return f"<h2>All utterances{cut}</h2>" + table_html(
        [*headers, "flags"], rows, numeric={1, 2, 3, 5}
    )


def _failed_section(table: pd.DataFrame) -> str:
    failed = table[table["flags"].map(lambda f: "failed_decode" in f)]
    rows = [
        [esc(r["utt_id"]), f'<span class="hyp">{esc(r["error"])}</span>']
        for _, r in failed.iterrows()
    ]
    return f"<h2>Failed items ({len(failed)})</h2>" + table_html(
        ["utt_id", "error"], rows
    )


def _slices_section(summary: dict) -> str:
    parts = ["<h2>Slices</h2>"]
    for kind in ("speaker", "source_folder", "duration_bucket"):
        rows = [
            [
                esc(s["value"]),
                str(s["n"]),
                str(s["n_scored"]),
                f"{s['audio_hours'] * 3600.0:.1f}",
                pct(s["wer"]),
                esc(ci_text(s["wer_ci_low"], s["wer_ci_high"])),
                pct(s["cer"]),
                str(s["n_flagged"]),
            ]
            for s in summary["slices"]
            if s["slice"] == kind
        ]
        headers = [kind, "n", "scored", "audio s", "WER", "WER CI", "CER", "flagged"]
        parts.append(
            f"<h3>By {esc(kind)}</h3>" + table_html(headers, rows, {1, 2, 3, 4, 6, 7})
        )
    return "".join(parts)


def _comparison_section(comparison: dict) -> str:
    a, b = comparison["label_a"], comparison["label_b"]
    delta = comparison["delta"]
    delta_text = "n/a" if delta is None else f"{100 * delta:+.2f} points"
    ci = comparison["delta_ci_low"], comparison["delta_ci_high"]
    ci_text = "" if None in ci else f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
    verdict = ""
    if None not in ci:
        if ci[1] < 0:
            verdict = f"{b} is better: the whole interval is below zero."
        elif ci[0] > 0:
            verdict = f"{b} is worse: the whole interval is above zero."
        else:
            verdict = "The interval contains zero: no significant difference."
    parts = [
        f"<h2>Comparison: {esc(b)} against {esc(a)}</h2>",
        f"<p>Paired on {comparison['n_paired']} utterances scored in both "
        f"({comparison['n_only_a']} only in {esc(a)}, {comparison['n_only_b']} only "
        f"in {esc(b)}). WER {esc(a)} {pct(comparison['wer_a'], 2)}, {esc(b)} "
        f"{pct(comparison['wer_b'], 2)}; delta ({esc(b)} &minus; {esc(a)}) "
        f"<b>{delta_text}</b>, paired bootstrap CI {ci_text}. {esc(verdict)}</p>",
        f"<p>{esc(b)} better on {comparison['n_better']}, worse on "
        f"{comparison['n_worse']}, same on {comparison['n_same']} utterances.</p>",
    ]
    for key, title in (
        ("most_improved", "Most improved"),
        ("most_regressed", "Most regressed"),
    ):
        rows = [
            [
                esc(r["utt_id"]),
                esc(r["reference_norm"]),
                f'<span class="hyp">{esc(r["hypothesis_a"])}</span>',
                f'<span class="hyp">{esc(r["hypothesis_b"])}</span>',
                pct(r["wer_a"]),
                pct(r["wer_b"]),
            ]
            for r in comparison[key]
        ]
        headers = [
            "utt_id",
            "reference",
            f"hypothesis {a}",
            f"hypothesis {b}",
            f"WER {a}",
            f"WER {b}",
        ]
        parts.append(f"<h3>{title}</h3>" + table_html(headers, rows, numeric={4, 5}))
    return "".join(parts)


def _run_info_section(run_info: dict, summary: dict) -> str:
    rows = [
        [
            esc(k),
            f"<pre>{esc(json.dumps(v, indent=2, default=str))}</pre>"
            if isinstance(v, dict | list)
            else esc(v),
        ]
        for k, v in run_info.items()
    ]
    rows += [
        [esc(k), esc(summary[k])]
        for k in (
            "normalizer",
            "n_bootstrap",
            "ci_level",
            "n_ok",
            "n_failed",
            "n_with_reference",
            "n_empty_reference",
            "n_scored",
        )
    ]
    return "<h2>Run information</h2>" + table_html(["key", "value"], rows)


def _merge_transcripts(
    per_utt: pd.DataFrame, transcripts: pd.DataFrame
) -> pd.DataFrame:
    tr = transcripts.reindex(columns=["utt_id", *_TRANSCRIPT_COLUMNS])
    table = per_utt.merge(tr, on="utt_id", how="left")
    table["text"] = table["text"].where(table["text"].notna(), "")
    table["error"] = table["error"].where(table["error"].notna(), "no transcript row")
    for col in ("avg_logprob", "no_speech_prob", "compression_ratio", "decode_seconds"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


def render_report(
    per_utt: pd.DataFrame,
    summary: dict,
    transcripts: pd.DataFrame,
    audio_clips: dict[str, bytes],
    run_info: dict,
    comparison: dict | None = None,
    *,
    n_worst: int = 20,
    max_clip_bytes: int = 4_000_000,
    max_index_rows: int = 2000,
) -> str:
    """Render the review page as one self-contained HTML document.

    Parameters
    ----------
    per_utt, summary : outputs of ``tasks.asr.evaluation.compute_evaluation``
    transcripts : ASR output rows (utt_id, text, avg_logprob, no_speech_prob,
        compression_ratio, decode_seconds, error); joined on utt_id
    audio_clips : utt_id -> FLAC/WAV/Ogg/MP3 bytes; only the clips of the
        utterances shown in the worst list are embedded (those over
        ``max_clip_bytes`` are named, not embedded)
    run_info : JSON-like run description, shown as a table. Keys with a meaning:
        ``title``, ``model``, ``started_at``, ``stage_seconds`` ({stage: wall s},
        for RTFx), ``wall_seconds`` (whole run), ``audio_seconds`` (default: the
        summary's audio hours).
    comparison : summary dict of ``tasks.asr.comparison.compute_comparison``, optional
    n_worst : utterances shown with diff and audio
    max_index_rows : rows of the "All utterances" table (worst first)

    Returns
    -------
    str, a complete HTML document (UTF-8).
    """
    table = _merge_transcripts(per_utt, transcripts)
    has_wer = summary.get("wer") is not None
    figures = (
        wer_figures(table, summary) if has_wer else no_reference_figures(table, summary)
    )
    figures.append(throughput_figure(table, run_info, summary))
    title = run_info.get("title") or f"ASR evaluation: {run_info.get('model', '')}"
    subtitle = " &middot; ".join(
        f"{k.replace('_', ' ')} {esc(run_info[k])}"
        for k in ("run_id", "started_at", "finished_at")
        if run_info.get(k)
    )
    body = [
        f"<h1>{esc(title)}</h1><div class='muted'>{subtitle}</div>",
        _cards(summary, run_info),
        "" if has_wer else "<p><b>No references: WER is not computed.</b></p>",
        f'<h2>Charts</h2><div class="grid">{"".join(figures)}</div>',
        _comparison_section(comparison) if comparison else "",
        _worst_section(table, audio_clips, n_worst, max_clip_bytes),
        _flagged_section(table),
        _failed_section(table),
        _slices_section(summary),
        _index_section(table, max_index_rows),
        _run_info_section(run_info, summary),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>"
        + "\n".join(body)
        + f"\n<script>{JS}</script></body></html>\n"
    )


# ---------------------------------------------------------------- artifacts


def summary_table_rows(summary: dict) -> list[dict]:
    """Rows with identical keys for a Prefect table artifact: the corpus, then
    every slice. Rates are fractions rounded to 4 digits; None where undefined."""
    keys = ("n", "n_scored", "wer", "wer_ci_low", "wer_ci_high", "cer", "n_flagged")

    def row(group: str, value: str, stats: dict) -> dict:
        out = {"group": group, "value": value}
        for k in keys:
            v = stats.get(k)
            out[k] = round(v, 4) if isinstance(v, float) else v
        return out

    corpus = dict(summary, n=summary["n_utts"])
    rows = [row("corpus", "all", corpus)]
    rows += [row(s["slice"], s["value"], s) for s in summary["slices"]]
    return rows


def review_text(summary: dict) -> str:
    """'WER before review (3 accepted, 1 corrected, 1 rejected: not scored)'."""
    n = summary["n_reviewed"]
    return (
        f"WER before review ({n['accept']} accepted, {n['correct']} corrected, "
        f"{n['reject']} rejected: not scored)"
    )


def render_markdown_summary(summary: dict, run_info: dict) -> str:
    """Short Markdown summary for a Prefect markdown artifact or a terminal."""
    level = round(100 * summary.get("ci_level", 0.95))
    lines = [f"## ASR evaluation: {run_info.get('model', 'unknown model')}", ""]
    lines += ["| metric | value |", "| --- | --- |"]
    for name in ("wer", "cer"):
        if summary.get(name) is not None:
            ci = ci_text(summary[f"{name}_ci_low"], summary[f"{name}_ci_high"])
            lines.append(
                f"| {name.upper()} | {pct(summary[name], 2)} ({level}% CI {ci}) |"
            )
    if summary.get("before_review"):
        before = pct(summary["before_review"]["wer"], 2)
        lines.append(f"| {review_text(summary)} | {before} |")
    lines += [
        f"| utterances | {summary['n_utts']} ({summary['n_ok']} ok, "
        f"{summary['n_failed']} failed) |",
        f"| scored | {summary['n_scored']} of {summary['n_with_reference']} with "
        "reference |",
        f"| audio | {summary['audio_hours']:.3f} h |",
        f"| flagged | {summary['n_flagged']} |",
    ]
    rtfx = stage_rtfx(run_info, summary).get("total")
    if rtfx is not None:
        lines.append(f"| RTFx (whole run) | {rtfx:.1f} |")
    flags = [
        f"{f} {summary['n_flagged_by_flag'][f]}"
        for f in FLAG_NAMES
        if summary["n_flagged_by_flag"].get(f)
    ]
    if flags:
        lines += ["", "Flags: " + ", ".join(flags)]
    if summary.get("wer") is None:
        lines += ["", "No references: WER not computed."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- stage task

_REPORT_TRANSCRIPT_COLUMNS = [
    "utt_id",
    "text",
    "avg_logprob",
    "no_speech_prob",
    "compression_ratio",
    "decode_seconds",
    "status",
    "error",
]


def _clips_for(run_dir: str, utt_ids: list[str]) -> dict[str, bytes]:
    """FLAC bytes of the given utterances, read from the ingest stage."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    parts = [str(p) for p in list_parts(run_dir, INGEST)]
    if not parts or not utt_ids:
        return {}
    table = ds.dataset(parts, format="parquet").to_table(
        columns=["utt_id", "audio"], filter=pc.field("utt_id").isin(utt_ids)
    )
    return {
        row["utt_id"]: row["audio"]["bytes"]
        for row in table.to_pylist()
        if row["audio"] is not None
    }


@task(name="report-run", cache_policy=NONE)
def report_run(
    run_dir: str, run_info: dict, compare_to: str | None = None, n_worst: int = 20
) -> str:
    """Write RUN_DIR/report.html from the evaluation stage; return its path.

    With `compare_to` (another run folder over the same utterances), the page also
    shows what changed: WER delta with its CI, better and worse utterances.
    """
    per_utt = read_stage(run_dir, EVALUATION).to_pandas()
    with open(summary_path(run_dir)) as fh:
        summary = json.load(fh)
    transcripts = read_stage(run_dir, TRANSCRIPTS, _REPORT_TRANSCRIPT_COLUMNS)
    transcripts = transcripts.to_pandas()
    # Inputs that failed at ingest have no transcript row: show the ingest error.
    ingest = read_stage(run_dir, INGEST, ["utt_id", "status", "error"]).to_pandas()
    ingest_failed = ingest[ingest["status"] != "ok"].assign(
        error=lambda f: "ingest: " + f["error"].fillna("")
    )
    transcripts = pd.concat([transcripts, ingest_failed], ignore_index=True)
    comparison = None
    if compare_to:
        other = read_stage(compare_to, EVALUATION).to_pandas()
        _, comparison = compute_comparison(
            other,
            per_utt,
            label_a=os.path.basename(os.path.normpath(compare_to)),
            label_b=os.path.basename(os.path.normpath(run_dir)),
        )
    clips = _clips_for(run_dir, shown_utt_ids(per_utt, transcripts, n_worst))
    html = render_report(
        per_utt, summary, transcripts, clips, run_info, comparison, n_worst=n_worst
    )
    path = os.path.join(run_dir, "report.html")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(html)
    os.replace(path + ".tmp", path)
    return path
