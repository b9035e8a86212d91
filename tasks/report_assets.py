"""Building blocks of the HTML report: stylesheet, the one small script, escaping
and number formatting, tables, the word-level diff and the data-URI audio player.
Everything returns strings of markup; all text from the data goes through ``esc``.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from tasks.metrics import align_words

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
.sub .ref { text-decoration: line-through; color: #7a4b00; padding: 0; }
.del { background: #f9c9c0; text-decoration: line-through; }
.ins { background: #bfe8d8; text-decoration: underline; }
.legend > span { margin-right: 10px; }
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


# ---------------------------------------------------------------- formatting


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def ci_text(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"[{pct(low)}, {pct(high)}]"


def duration_text(seconds: float) -> str:
    """Seconds, minutes or hours, whichever reads best."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def num(x: Any, fmt: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return format(x, fmt)


def table_html(
    headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()
) -> str:
    """A sortable table; cells are already-escaped markup."""
    if not rows:
        return '<p class="muted">None.</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def diff_html(reference_norm: str, hypothesis_norm: str) -> str:
    """Word-level diff: substitutions, deletions and insertions in distinct styles."""
    out = []
    for op, ref, hyp in align_words(reference_norm, hypothesis_norm):
        if op == "equal":
            out.append(esc(ref))
        elif op == "substitute":
            out.append(
                f'<span class="sub" title="substitution"><span class="ref">{esc(ref)}'
                f"</span>&rarr;{esc(hyp)}</span>"
            )
        elif op == "delete":
            out.append(f'<span class="del" title="deletion">{esc(ref)}</span>')
        else:
            out.append(f'<span class="ins" title="insertion">{esc(hyp)}</span>')
    return " ".join(out) or '<span class="muted">(both empty)</span>'


LEGEND = (
    '<p class="legend">Legend: <span class="sub"><span class="ref">reference</span>'
    '&rarr;hypothesis</span> substitution <span class="del">word</span> deletion '
    '<span class="ins">word</span> insertion</p>'
)


def flags_html(flags: Any) -> str:
    return "".join(f'<span class="flag">{esc(f)}</span>' for f in flags)
