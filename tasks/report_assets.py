"""Static pieces of the HTML report: stylesheet, the one small script, inline SVG
charts, and the data-URI audio player. Everything returns strings of markup;
every piece of text that reaches the markup goes through ``esc``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

# Colours: Okabe-Ito palette, distinguishable with the common colour deficiencies.
BLUE, ORANGE, GREEN, RED, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#999999"

CSS = """
:root { --fg:#1b1f24; --muted:#5a6470; --line:#d8dde3; --bg:#ffffff; --panel:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); margin: 0 auto; padding: 24px 32px;
  max-width: 1200px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 18px 0 6px; }
.muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 16px; min-width: 150px; }
.card .v { font-size: 24px; font-weight: 650; }
.card .l { color: var(--muted); font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
  gap: 18px; }
figure { margin: 0; background: var(--panel); border: 1px solid var(--line);
  border-radius: 8px; padding: 8px; }
figcaption { font-weight: 600; margin: 2px 6px 4px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--fg); }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--panel); position: sticky; top: 0; }
th.sortable { cursor: pointer; }
th.sortable::after { content: " \\2195"; color: var(--muted); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.utt { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  margin: 12px 0; }
.utt-head { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; }
.utt-head b { font-family: ui-monospace, monospace; }
.diff { line-height: 2; margin: 8px 0 4px; word-wrap: break-word; }
.diff span { padding: 1px 3px; border-radius: 3px; }
.sub { background: #fde2b3; }
.sub .ref { text-decoration: line-through; color: #7a4b00; }
.del { background: #f9c9c0; text-decoration: line-through; }
.ins { background: #bfe8d8; text-decoration: underline; }
.legend span { margin-right: 10px; }
.flag { display: inline-block; background: #eef1f5; border: 1px solid var(--line);
  border-radius: 10px; padding: 0 7px; margin: 1px 2px; font-size: 12px; }
.hyp { white-space: pre-wrap; word-break: break-word; }
audio { height: 32px; vertical-align: middle; }
pre { background: var(--panel); padding: 8px; border-radius: 6px; overflow-x: auto; }
"""

# Click a column header of a .sortable table to sort by it (numbers numerically).
JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("data-asc") !== "1";
      th.setAttribute("data-asc", asc ? "1" : "0");
      function key(row) {
        var cell = row.cells[col];
        var raw = cell.getAttribute("data-v");
        var text = raw !== null ? raw : cell.textContent.trim();
        var num = parseFloat(text);
        return isNaN(num) ? text.toLowerCase() : num;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

_AUDIO_MIME = (
    (b"fLaC", "audio/flac"),
    (b"RIFF", "audio/wav"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
)


def esc(value: object) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def audio_mime(data: bytes) -> str:
    """MIME type from the container's magic bytes; raises for unknown formats."""
    for magic, mime in _AUDIO_MIME:
        if data.startswith(magic):
            return mime
    raise ValueError("audio clip is not FLAC, WAV, Ogg or MP3 (unknown magic bytes)")


def audio_player(data: bytes) -> str:
    """An <audio controls> element with the clip embedded as a base64 data URI."""
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<audio controls preload="none" '
        f'src="data:{audio_mime(data)};base64,{encoded}"></audio>'
    )


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
        ticks.append(round(t, 10))
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
