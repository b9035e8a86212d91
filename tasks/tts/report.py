"""RUN_DIR/report.html of a TTS dataset run: one self-contained page.

Like the ASR report (and built from its pieces in `report_assets` and
`report_charts`): inline CSS, inline SVG charts, audio as data: URIs, and a
Content-Security-Policy that forbids every fetch. Mel spectrograms are inline PNGs
drawn with matplotlib's Agg backend. Sections: summary cards, charts (DNSMOS,
round-trip WER, duration, speaking rate), comparison with another run, the worst
utterances by round-trip WER (audio, word diff, mel), stop-token failures,
failed rows, run information.
"""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from tasks.metrics import bootstrap_ratios, percentile_ci
from tasks.report_assets import (
    CSS,
    JS,
    LEGEND,
    audio_player,
    ci_text,
    diff_html,
    duration_text,
    esc,
    num,
    pct,
    table_html,
)
from tasks.report_charts import bar_chart, figure
from tasks.stage import StageSpec, list_parts, read_stage
from tasks.tts.audio import AUDIO
from tasks.tts.evaluation import TTS_EVALUATION, summary_path
from tasks.tts.mels import MELS, TTS_MEL

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "media-src data:; img-src data:"
)


def mel_png(mel: np.ndarray, title: str = "") -> str:
    """An <img> with the (n_frames, n_mels) log-mel drawn as a heatmap (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 1.7), dpi=80)
    ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", vmin=-6, vmax=1)
    ax.set_xlabel("frame (16 ms)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="mel spectrogram" src="data:image/png;base64,{data}">'


def _histogram(values: pd.Series, edges: list[float], label: str, fmt: str) -> str:
    v = values.dropna().to_numpy(dtype=float)
    counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
    labels = [format(e, fmt) for e in edges[:-1]]
    tips = [
        f"{format(a, fmt)}-{format(b, fmt)}: {c}"
        for a, b, c in zip(edges, edges[1:], counts, strict=False)
    ]
    return bar_chart(
        [float(c) for c in counts],
        labels,
        tips=tips,
        x_label=label,
        y_label="utterances",
        show_labels=len(edges) <= 17,
    )


def _cards(summary: dict) -> str:
    dn = summary["dnsmos"]
    ovrl, p808 = dn["dnsmos_ovrl"]["mean"], dn["dnsmos_p808"]["mean"]
    failed = sum(summary["n_failed"].values())
    wer_ci = ci_text(summary["wer_ci_low"], summary["wer_ci_high"])
    cards = [
        (
            f"{summary['n_ok']} / {summary['n_requests']}",
            f"utterances ok ({failed} failed rows)",
        ),
        (duration_text(summary["audio_seconds"]), "audio synthesized"),
        (pct(summary["wer"]), f"round-trip WER {wer_ci}"),
        (pct(summary["cer"]), f"round-trip CER ({esc(summary['asr_model'])})"),
        (num(ovrl), f"DNSMOS OVRL (P.808 {num(p808)})"),
        (
            pct(summary["stop_failure_rate"]),
            f"stop failures ({summary['n_stop_failures']})",
        ),
        (num(summary["synthesis_rtfx"], ".1f"), "synthesis RTFx"),
        (num(summary["words_per_min"]["p50"], ".0f"), "words/min (median)"),
    ]
    cards += _attempt_cards(summary.get("attempts") or {})
    cells = "".join(
        f'<div class="card"><div class="v">{value}</div><div class="l">{label}</div>'
        "</div>"
        for value, label in cards
    )
    return f'<div class="cards">{cells}</div>'


def _attempt_cards(att: dict) -> list[tuple[str, str]]:
    """The closed loop (`s2s synthesize --max-round-trip-wer`): passes per
    attempt and the items that never passed."""
    if att.get("max_round_trip_wer") is None:
        return []
    limit = pct(att["max_round_trip_wer"], 0)
    cards = [
        (f"{n}", f"passed (round-trip WER &le; {limit}) at attempt {esc(k)}")
        for k, n in att["passed_at_attempt"].items()
    ]
    never = att["never_passed"]
    listed = esc(", ".join(never[:10])) + (" ..." if len(never) > 10 else "")
    cards.append(
        (
            f"{len(never)}",
            f"never passed in {att['max_attempts']} attempts"
            + (f": {listed}" if never else ""),
        )
    )
    return cards


_HISTOGRAMS = (  # (caption, column, bin edges, x label, label format)
    ("DNSMOS OVRL", "dnsmos_ovrl", list(np.arange(1.0, 5.01, 0.25)), "OVRL", ".2f"),
    (
        "Round-trip WER per utterance",
        "wer",
        [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2],
        "WER (last bin: 100% and more)",
        ".2f",
    ),
    ("Duration", "duration_s", [0, 1, 2, 4, 6, 8, 10, 15, 20, 30, 60], "seconds", "g"),
    (
        "Speaking rate",
        "words_per_min",
        list(range(60, 301, 20)),
        "words per minute",
        "g",
    ),
)


def _charts(ev: pd.DataFrame) -> str:
    ok = ev[ev["status"] == "ok"]
    figs = [
        figure(caption, _histogram(ok[column], edges, label, fmt))
        for caption, column, edges, label, fmt in _HISTOGRAMS
    ]
    return f'<h2>Charts</h2><div class="grid">{"".join(figs)}</div>'


def _utterance(row: dict, clip: bytes | None, mel: np.ndarray | None) -> str:
    head = (
        f'<div class="utt-head"><b>{esc(row["utt_id"])}</b>'
        f"<span>WER {pct(row['wer'])}</span><span>CER {pct(row['cer'])}</span>"
        f"<span>OVRL {num(row['dnsmos_ovrl'])}</span>"
        f"<span>{num(row['duration_s'], '.1f')} s</span>"
        f"{audio_player(clip) if clip else ''}</div>"
    )
    words = diff_html(row["reference_norm"] or "", row["hypothesis_norm"] or "")
    diff = f'<div class="diff">{words}</div>'
    text = f'<div class="muted hyp">text: {esc(row["text"])}</div>'
    image = mel_png(mel) if mel is not None else ""
    return f'<div class="utt">{head}{diff}{text}{image}</div>'


def _rows_of(run_dir: str, stage: StageSpec, columns, utt_ids: list[str]) -> list:
    """The given columns of the rows of `utt_ids` (no other row is read)."""
    parts = [str(p) for p in list_parts(run_dir, stage)]
    if not parts or not utt_ids:
        return []
    table = ds.dataset(parts, format="parquet").to_table(
        columns=["utt_id", *columns], filter=pc.field("utt_id").isin(utt_ids)
    )
    return table.to_pylist()


def _clips(run_dir: str, utt_ids: list[str]) -> dict[str, bytes]:
    rows = _rows_of(run_dir, AUDIO, ["audio"], utt_ids)
    return {r["utt_id"]: r["audio"]["bytes"] for r in rows if r["audio"]}


def _mels(run_dir: str, utt_ids: list[str]) -> dict[str, np.ndarray]:
    rows = _rows_of(run_dir, MELS, TTS_MEL.columns, utt_ids)
    mels = {r["utt_id"]: TTS_MEL.read(r) for r in rows}
    return {u: mel for u, mel in mels.items() if mel is not None}


def _comparison(ev: pd.DataFrame, other: pd.DataFrame, names: tuple[str, str]) -> str:
    cols = ["utt_id", "word_errors", "ref_words", "wer", "dnsmos_ovrl"]
    a = other[other["status"] == "ok"][cols]
    b = ev[ev["status"] == "ok"][cols]
    paired = a.merge(b, on="utt_id", suffixes=("_a", "_b"))
    paired = paired[paired["ref_words_a"] > 0]
    if paired.empty:
        return "<h2>Comparison</h2><p class='muted'>No utterances in common.</p>"
    den = paired["ref_words_a"].to_numpy(float)
    ea, eb = (paired[f"word_errors_{s}"].to_numpy(float) for s in "ab")
    sa, sb = bootstrap_ratios([ea, eb], den, 1000, 0)
    lo, hi = percentile_ci(sb - sa, 0.95)
    wa, wb = ea.sum() / den.sum(), eb.sum() / den.sum()
    rows = [
        [esc(names[0]), pct(wa), num(paired["dnsmos_ovrl_a"].mean())],
        [esc(names[1]), pct(wb), num(paired["dnsmos_ovrl_b"].mean())],
    ]
    delta = paired.assign(delta=paired["wer_b"] - paired["wer_a"]).sort_values("delta")
    extremes = pd.concat([delta.head(5), delta.tail(5)]).drop_duplicates("utt_id")
    moved = [
        [esc(r.utt_id), pct(r.wer_a), pct(r.wer_b), pct(r.delta)]
        for r in extremes.itertuples()
        if r.delta != 0
    ]
    return (
        f"<h2>Comparison: {esc(names[1])} against {esc(names[0])}</h2>"
        f"<p>{len(paired)} utterances in both runs. WER change {pct(wb - wa, 2)} "
        f"(95% CI {ci_text(lo, hi)}, paired bootstrap).</p>"
        + table_html(["run", "round-trip WER", "DNSMOS OVRL"], rows, {1, 2})
        + "<h3>Largest changes</h3>"
        + table_html(
            ["utt_id", f"WER {names[0]}", f"WER {names[1]}", "change"], moved, {1, 2, 3}
        )
    )


def render_tts_report(
    ev: pd.DataFrame,
    summary: dict,
    clips: dict[str, bytes],
    mels: dict[str, np.ndarray],
    stop_failures: list[str],
    run_info: dict,
    comparison_html: str = "",
    n_worst: int = 20,
) -> str:
    """The review page as one HTML document.

    Parameters
    ----------
    ev : tts_evaluation rows; summary : ``tts_evaluation/_summary.json``
    clips : utt_id -> FLAC bytes (worst utterances); mels : utt_id ->
        (n_frames, 80) log-mel (worst utterances and stop failures)
    stop_failures : utt_ids cut at the decoder's step limit
    run_info : JSON-like run description, shown as a table
    """
    ok = ev[ev["status"] == "ok"].sort_values("wer", ascending=False)
    worst = ok[ok["wer"] > 0].head(n_worst)
    worst_html = "".join(
        _utterance(r, clips.get(r["utt_id"]), mels.get(r["utt_id"]))
        for r in worst.to_dict("records")
    )
    worst_html = (
        worst_html or "<p class='muted'>No utterance has round-trip errors.</p>"
    )
    stops = (
        "".join(
            f"<div class='utt'><b>{esc(u)}</b>{mel_png(mels[u]) if u in mels else ''}"
            "</div>"
            for u in stop_failures[:n_worst]
        )
        or "<p class='muted'>None: every utterance ended on its stop token.</p>"
    )
    failures = [
        [esc(f["stage"]), esc(f["utt_id"]), esc(f["error"])]
        for f in summary["failures"]
    ]
    info = [
        [esc(k), esc(json.dumps(v) if isinstance(v, dict | list) else v)]
        for k, v in run_info.items()
    ]
    title = run_info.get("title", "TTS dataset review")
    body = [
        f"<h1>{esc(title)}</h1><div class='muted'>engine {esc(run_info.get('engine'))}"
        f" &middot; vocoder {esc(run_info.get('vocoder'))} &middot; "
        f"{esc(run_info.get('started_at', ''))}</div>",
        _cards(summary),
        _charts(ev),
        comparison_html,
        f"<h2>Worst {len(worst)} utterances by round-trip WER</h2>{LEGEND}{worst_html}",
        f"<h2>Stop-token failures ({len(stop_failures)})</h2>{stops}",
        "<h2>Failed rows</h2>" + table_html(["stage", "utt_id", "error"], failures),
        "<h2>Run information</h2>" + table_html(["key", "value"], info),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>"
        + "\n".join(body)
        + f"\n<script>{JS}</script></body></html>\n"
    )


def report_tts_run(
    run_dir: str, run_info: dict, compare_to: str | None = None, n_worst: int = 20
) -> str:
    """Write RUN_DIR/report.html from the run's stages; return its path."""
    ev = read_stage(run_dir, TTS_EVALUATION).to_pandas()
    with open(summary_path(run_dir)) as fh:
        summary = json.load(fh)
    columns = ["utt_id", "hit_max_length", "cut_short"]
    mels_meta = read_stage(run_dir, MELS, columns).to_pandas()
    cut = mels_meta["hit_max_length"].fillna(False).astype(bool)
    cut |= mels_meta["cut_short"].fillna(False).astype(bool)
    stop_failures = sorted(mels_meta.loc[cut, "utt_id"])
    ok = ev[ev["status"] == "ok"].sort_values("wer", ascending=False)
    worst = ok[ok["wer"] > 0].head(n_worst)["utt_id"].tolist()
    clips = _clips(run_dir, worst)
    mels = _mels(run_dir, worst + stop_failures[:n_worst])
    comparison_html = ""
    if compare_to:
        other = read_stage(compare_to, TTS_EVALUATION).to_pandas()
        names = tuple(
            os.path.basename(os.path.normpath(p)) for p in (compare_to, run_dir)
        )
        comparison_html = _comparison(ev, other, names)
    html = render_tts_report(
        ev, summary, clips, mels, stop_failures, run_info, comparison_html, n_worst
    )
    path = os.path.join(run_dir, "report.html")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(html)
    os.replace(path + ".tmp", path)
    return path
