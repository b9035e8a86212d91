"""Inline SVG charts of the HTML report: two primitives (bars, scatter) drawn by
hand, no plotting library, and the report's figures built from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.report_assets import ci_text, esc, pct

# Colours: Okabe-Ito palette, distinguishable with the common colour deficiencies.
BLUE, ORANGE, GREY = "#0072B2", "#E69F00", "#999999"
# Per-utterance bars beyond this many are drawn as evenly spaced order statistics.
_MAX_BARS = 300

# ---------------------------------------------------------------- charts


def nice_ticks(low: float, high: float, n_target: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of 10)."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / n_target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks, t = [], start
    while t < high + step * 0.999:
        ticks.append(round(t, 10) + 0.0)  # + 0.0 turns -0.0 into 0.0
        t += step
    return ticks


def _fmt(value: float, percent: bool) -> str:
    return f"{100 * value:.0f}%" if percent else f"{value:g}"


class _Frame:
    """Plot area inside an SVG with linear x/y mappings and drawn axes."""

    def __init__(self, width, height, x_range, y_ticks, left=58, bottom=42):
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = left, 14, 12, bottom
        self.x0, self.x1 = x_range
        self.y_ticks = y_ticks
        self.y0, self.y1 = y_ticks[0], y_ticks[-1]

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        inner = self.w - self.left - self.right
        return self.left + (value - self.x0) / span * inner

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        inner = self.h - self.top - self.bottom
        return self.h - self.bottom - (value - self.y0) / span * inner

    def axes(self, y_label: str, x_label: str, percent: bool) -> list[str]:
        parts = []
        for t in self.y_ticks:
            y = self.y(t)
            parts.append(
                f'<line x1="{self.left}" x2="{self.w - self.right}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="#e3e7ec"/>'
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{esc(_fmt(t, percent))}</text>"
            )
        base = self.h - self.bottom
        parts.append(
            f'<line x1="{self.left}" x2="{self.w - self.right}" y1="{base}" '
            f'y2="{base}" stroke="#888"/>'
            f'<text x="{(self.left + self.w - self.right) / 2:.0f}" y="{self.h - 6}" '
            f'text-anchor="middle">{esc(x_label)}</text>'
            f'<text transform="translate(14,{(self.top + base) / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle">{esc(y_label)}</text>'
        )
        return parts


def _svg(width: int, height: int, parts: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{esc(label)}">{"".join(parts)}</svg>'
    )


def bar_chart(
    values: Sequence[float],
    labels: Sequence[str],
    *,
    tips: Sequence[str],
    x_label: str,
    y_label: str,
    percent: bool = False,
    ci: Sequence[tuple[float, float]] | None = None,
    show_labels: bool = True,
    width: int = 560,
    height: int = 260,
) -> str:
    """Vertical bars, optionally with CI whiskers; ``tips`` become hover titles."""
    if not values:
        return '<p class="muted">Nothing to plot.</p>'
    top = max([*values, *(hi for _, hi in ci or [])], default=0.0)
    frame = _Frame(width, height, (0, len(values)), nice_ticks(0.0, max(top, 1e-9)))
    parts = frame.axes(y_label, x_label, percent)
    slot = frame.x(1) - frame.x(0)
    for i, (value, tip) in enumerate(zip(values, tips, strict=True)):
        x, y = frame.x(i) + slot * 0.12, frame.y(value)
        parts.append(
            f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(slot * 0.76, 0.5):.2f}" '
            f'height="{frame.y(0) - y:.2f}" fill="{BLUE}"><title>{esc(tip)}</title>'
            "</rect>"
        )
        if ci is not None and not any(math.isnan(c) for c in ci[i]):
            cx, (lo, hi) = frame.x(i + 0.5), ci[i]
            parts.append(
                f'<path d="M{cx:.1f},{frame.y(lo):.1f}V{frame.y(hi):.1f}'
                f"M{cx - 5:.1f},{frame.y(lo):.1f}h10M{cx - 5:.1f},{frame.y(hi):.1f}h10"
                f'" stroke="{GREY}" stroke-width="1.5" fill="none"/>'
            )
        if show_labels:
            parts.append(
                f'<text x="{frame.x(i + 0.5):.1f}" y="{frame.y(0) + 15:.1f}" '
                f'text-anchor="middle">{esc(labels[i])}</text>'
            )
    return _svg(width, height, parts, y_label)


def scatter_plot(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    tips: Sequence[str],
    x_label: str,
    y_label: str,
    percent_y: bool = False,
    width: int = 560,
    height: int = 260,
) -> str:
    """Points with hover titles; axes span the data with round ticks."""
    if not xs:
        return '<p class="muted">Nothing to plot.</p>'
    x_ticks = nice_ticks(min(xs), max(xs), 6)
    y_ticks = nice_ticks(min(0.0, min(ys)), max(max(ys), 1e-9))
    frame = _Frame(width, height, (x_ticks[0], x_ticks[-1]), y_ticks)
    parts = frame.axes(y_label, x_label, percent_y)
    for t in x_ticks:
        parts.append(
            f'<text x="{frame.x(t):.1f}" y="{frame.y(y_ticks[0]) + 15:.1f}" '
            f'text-anchor="middle">{esc(f"{t:g}")}</text>'
        )
    for x, y, tip in zip(xs, ys, tips, strict=True):
        parts.append(
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="4" '
            f'fill="{ORANGE}" fill-opacity="0.75" stroke="#7a5200">'
            f"<title>{esc(tip)}</title></circle>"
        )
    return _svg(width, height, parts, f"{y_label} against {x_label}")


# ---------------------------------------------------------------- figures


def stage_rtfx(run_info: dict, summary: dict) -> dict[str, float]:
    """Audio seconds processed per wall-clock second, per stage and in total."""
    audio_s = run_info.get("audio_seconds", summary.get("audio_hours", 0.0) * 3600.0)
    stage_s = {k: float(v) for k, v in (run_info.get("stage_seconds") or {}).items()}
    rtfx = {k: audio_s / v for k, v in stage_s.items() if v > 0}
    total_s = run_info.get("wall_seconds", sum(stage_s.values()))
    if total_s and audio_s:
        rtfx["total"] = audio_s / total_s
    return rtfx


def figure(caption: str, svg: str, note: str = "") -> str:
    note = f'<div class="muted">{esc(note)}</div>' if note else ""
    return f"<figure><figcaption>{esc(caption)}</figcaption>{svg}{note}</figure>"


def wer_figures(table: pd.DataFrame, summary: dict) -> list[str]:
    scored = table[table["wer"].notna()].sort_values("wer", ascending=False)
    wers, ids, note = scored["wer"].to_numpy(), list(scored["utt_id"]), ""
    if len(wers) > _MAX_BARS:  # evenly spaced order statistics of the sorted WERs
        pick = np.linspace(0, len(wers) - 1, _MAX_BARS).round().astype(int)
        wers, ids = wers[pick], [f"rank {i + 1} of {len(scored)}" for i in pick]
        note = f"{_MAX_BARS} evenly spaced ranks of {len(scored)} utterances."
    tips = [f"{u}: WER {pct(w)}" for u, w in zip(ids, wers, strict=True)]
    per_utt = bar_chart(
        list(wers),
        ids,
        tips=tips,
        x_label="utterances, worst first",
        y_label="WER",
        percent=True,
        show_labels=False,
    )
    buckets = [s for s in summary["slices"] if s["slice"] == "duration_bucket"]
    buckets = [s for s in buckets if s["wer"] is not None]
    by_bucket = bar_chart(
        [s["wer"] for s in buckets],
        [s["value"] for s in buckets],
        tips=[_bucket_tip(s) for s in buckets],
        ci=[(s["wer_ci_low"], s["wer_ci_high"]) for s in buckets],
        x_label="duration bucket",
        y_label="WER",
        percent=True,
    )
    conf = scored[scored["avg_logprob"].notna()]
    scatter = scatter_plot(
        list(conf["avg_logprob"]),
        list(conf["wer"]),
        tips=[
            f"{u}: WER {pct(w)}, avg_logprob {a:.2f}"
            for u, w, a in zip(
                conf["utt_id"], conf["wer"], conf["avg_logprob"], strict=True
            )
        ],
        x_label="mean token log-probability (avg_logprob)",
        y_label="WER",
        percent_y=True,
    )
    return [
        figure("WER per utterance (sorted)", per_utt, note),
        figure("WER by duration bucket (bars: corpus WER, whiskers: CI)", by_bucket),
        figure("Confidence against WER", scatter),
    ]


def _bucket_tip(s: dict) -> str:
    ci = ci_text(s["wer_ci_low"], s["wer_ci_high"])
    return f"{s['value']}: WER {pct(s['wer'])} {ci}, n={s['n_scored']}"


def no_reference_figures(table: pd.DataFrame, summary: dict) -> list[str]:
    buckets = [s for s in summary["slices"] if s["slice"] == "duration_bucket"]
    counts = bar_chart(
        [s["n"] for s in buckets],
        [s["value"] for s in buckets],
        tips=[f"{s['value']}: {s['n']} utterances" for s in buckets],
        x_label="duration bucket",
        y_label="utterances",
    )
    conf = table[table["avg_logprob"].notna()]
    scatter = scatter_plot(
        list(conf["avg_logprob"]),
        list(conf["duration_s"]),
        tips=[
            f"{u}: avg_logprob {a:.2f}"
            for u, a in zip(conf["utt_id"], conf["avg_logprob"], strict=True)
        ],
        x_label="mean token log-probability (avg_logprob)",
        y_label="duration (s)",
    )
    return [
        figure("Utterances by duration", counts),
        figure("Confidence against duration", scatter),
    ]


def throughput_figure(table: pd.DataFrame, run_info: dict, summary: dict) -> str:
    rtfx = stage_rtfx(run_info, summary)
    total = rtfx.pop("total", None)
    decode = table["decode_seconds"].sum(min_count=1)
    audio = table.loc[table["decode_seconds"].notna(), "duration_s"].sum()
    note = ""
    if not math.isnan(decode) and decode > 0:
        rtfx["decode*"] = audio / decode
        note = "decode*: audio over the sum of per-utterance decode_seconds."
    if total is not None:
        rtfx["whole run"] = total
    if not rtfx:
        return figure("Throughput", '<p class="muted">No timings recorded.</p>')
    names = list(rtfx)
    svg = bar_chart(
        [rtfx[n] for n in names],
        names,
        x_label="stage",
        y_label="RTFx",
        tips=[f"{n}: {rtfx[n]:.1f}x real time" for n in names],
    )
    return figure("Throughput: seconds of audio per second of wall time", svg, note)
