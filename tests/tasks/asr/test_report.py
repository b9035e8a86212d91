"""Tests for tasks/report.py: structure, escaping, embedded audio, and a headless
Chromium render that must finish without console errors."""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tasks.asr.comparison import compute_comparison
from tasks.asr.evaluation import (
    PER_UTT_COLUMNS,
    EvaluationOptions,
    compute_evaluation,
)
from tasks.asr.report import (
    render_markdown_summary,
    render_report,
    shown_utt_ids,
    summary_table_rows,
)

OPTS = EvaluationOptions(normalizer="basic", n_bootstrap=100)
SCRIPT_TEXT = '<script>alert("pwned")</script> & more'
RUN_INFO = {
    "model": "whisper-tiny.en",
    "run_id": "run-001",
    "started_at": "2025-01-01T10:00:00Z",
    "stage_seconds": {"ingest": 1.0, "asr": 4.0},
    "settings": {"beam_size": 5, "language": "en"},
}
VOID = {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "col"}


def flac_bytes(seconds: float = 0.5, sample_rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    buf = io.BytesIO()
    sf.write(buf, 0.1 * np.sin(2 * np.pi * 440 * t), sample_rate, format="FLAC")
    return buf.getvalue()


def make_tables(with_reference: bool = True, n_extra: int = 0):
    rows = [
        # one substitution (sat->sit), one deletion (the), one insertion (big)
        ("diff", "the cat sat on the mat", "big the cat sit on mat", -0.3, 0.01),
        ("good", "good morning everyone", "good morning everyone", -0.1, 0.01),
        ("evil", "hello there", SCRIPT_TEXT, -0.4, 0.95),
        ("loop", "thanks", "thank you " * 10, -0.9, 0.2),
    ]
    rows += [
        (f"x{i:04d}", "a b c d", "a b c" if i % 3 else "a b c d", -0.2, 0.0)
        for i in range(n_extra)
    ]
    transcripts = pd.DataFrame(
        {
            "utt_id": [r[0] for r in rows] + ["broken"],
            "text": [r[2] for r in rows] + [""],
            "avg_logprob": [r[3] for r in rows] + [np.nan],
            "no_speech_prob": [r[4] for r in rows] + [np.nan],
            "compression_ratio": np.nan,
            "duration_s": 4.0,
            "decode_seconds": 0.2,
            "status": ["ok"] * len(rows) + ["failed"],
            "error": [None] * len(rows) + ["CUDA <out of memory>"],
        }
    )
    metadata = pd.DataFrame(
        {
            "utt_id": transcripts["utt_id"],
            "reference": [r[1] if with_reference else None for r in rows] + [None],
            "speaker": "spk<1>",
            "source_path": "/corpus/a/x.flac",
            "duration_s": 4.0,
        }
    )
    per_utt, summary = compute_evaluation(transcripts, metadata, OPTS)
    return per_utt, summary, transcripts


class StrictParser(HTMLParser):
    """Checks that every non-void element is closed in order; records tags."""

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def parse(document: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(document)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    return parser


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    per_utt, summary, transcripts = make_tables()
    clips = {"diff": flac_bytes(), "good": flac_bytes()}
    document = render_report(per_utt, summary, transcripts, clips, RUN_INFO)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(document, encoding="utf-8")
    return path


def test_report_is_well_formed_and_self_contained(report_html):
    document = report_html.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>")
    parser = parse(document)
    tags = [t for t, _ in parser.tags]
    assert tags.count("svg") == 4 and tags.count("script") == 1
    # Nothing is fetched: every src is a data URI, and no URL but the SVG namespace.
    assert all(a["src"].startswith("data:") for t, a in parser.tags if "src" in a)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", document))
    assert urls == {"http://www.w3.org/2000/svg"}


def test_report_has_word_diff_and_legend(report_html):
    document = report_html.read_text(encoding="utf-8")
    assert '<span class="sub" title="substitution"><span class="ref">sat</span>' in (
        document
    )
    assert '<span class="del" title="deletion">the</span>' in document
    assert '<span class="ins" title="insertion">big</span>' in document
    assert "Legend:" in document


def test_report_embeds_only_shown_audio_as_data_uri(report_html):
    document = report_html.read_text(encoding="utf-8")
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', document)
    # "good" has a clip but WER 0, so it is not in the worst list: not embedded.
    assert len(sources) == 1
    assert "<b>good</b>" not in document
    prefix = "data:audio/flac;base64,"
    assert all(s.startswith(prefix) for s in sources)
    assert base64.b64decode(sources[0][len(prefix) :]) == flac_bytes()


def test_report_escapes_untrusted_text(report_html):
    document = report_html.read_text(encoding="utf-8")
    assert (
        "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; more" in document
    )
    assert "<script>alert" not in document
    assert "CUDA &lt;out of memory&gt;" in document  # failed item's error
    assert "spk&lt;1&gt;" in document  # slice value


def test_report_numbers_and_sections(report_html):
    document = report_html.read_text(encoding="utf-8")
    for heading in (
        "Flagged utterances",
        "Failed items (1)",
        "Slices",
        "Run information",
    ):
        assert heading in document
    # corpus WER of the fixture: see test_report_summary_numbers
    _, summary, _ = make_tables()
    assert f"{100 * summary['wer']:.1f}%" in document
    assert "no_speech_with_text" in document and "repeated_ngram" in document
    assert "&quot;beam_size&quot;: 5" in document  # settings dict shown as JSON


def test_report_summary_numbers():
    _, summary, _ = make_tables()
    # diff: 3 errors / 6 words; good: 0/3; evil: 2 sub + 3 ins / 2; loop: 1 sub + 19
    # ins / 1 word (basic normaliser keeps "thank you" x 10 = 20 words).
    assert summary["wer"] == pytest.approx((3 + 0 + 5 + 20) / (6 + 3 + 2 + 1))


def test_shown_utt_ids_are_the_embedded_clips():
    per_utt, summary, transcripts = make_tables()
    shown = shown_utt_ids(per_utt, transcripts, n_worst=2)
    assert shown == ["loop", "evil"]  # WER 2000% and 250%, worst first
    clips = {u: flac_bytes() for u in per_utt.utt_id}
    document = render_report(per_utt, summary, transcripts, clips, {}, n_worst=2)
    assert document.count("data:audio/flac;base64,") == 2
    cards = re.findall(r'<div class="utt-head"><b>([^<]+)</b>', document)
    assert cards == shown


def test_report_after_parquet_round_trip_is_identical(tmp_path):
    """Read back from Parquet, ``flags`` are numpy arrays, not lists."""
    per_utt, summary, transcripts = make_tables()
    path = tmp_path / "evaluation.parquet"
    table = pa.Table.from_pandas(per_utt[list(PER_UTT_COLUMNS)], preserve_index=False)
    pq.write_table(table, path)
    read_back = pq.read_table(path).to_pandas()
    assert isinstance(read_back["flags"][0], np.ndarray)
    clips = {"diff": flac_bytes()}
    assert render_report(read_back, summary, transcripts, clips, RUN_INFO) == (
        render_report(per_utt, summary, transcripts, clips, RUN_INFO)
    )


def test_report_without_references():
    per_utt, summary, transcripts = make_tables(with_reference=False)
    document = render_report(per_utt, summary, transcripts, {"evil": flac_bytes()}, {})
    parse(document)
    assert "No references: WER is not computed." in document
    assert "least confident utterances" in document
    assert "WER per utterance" not in document
    assert "&lt;script&gt;alert" in document and "<script>alert" not in document
    assert document.count("data:audio/flac;base64,") == 1


def test_report_many_utterances_draws_rank_samples():
    per_utt, summary, transcripts = make_tables(n_extra=400)
    document = render_report(per_utt, summary, transcripts, {}, RUN_INFO, n_worst=5)
    parse(document)
    assert "300 evenly spaced ranks of 404 utterances." in document
    assert document.count('<div class="utt">') == 5
    assert "<h2>All utterances</h2>" in document
    assert all(f"<td>{u}</td>" in document for u in per_utt.utt_id)
    capped = render_report(per_utt, summary, transcripts, {}, {}, max_index_rows=10)
    assert "<h2>All utterances (first 10 of 405)</h2>" in capped
    # worst first: the "loop" utterance (WER 2000%) leads the index
    index = capped.split("<h2>All utterances")[1]
    assert re.search(r"<tbody><tr><td>loop</td>", index)


def test_report_comparison_section():
    per_a, _, transcripts = make_tables()
    per_b = per_a.copy()
    per_b.loc[per_b.utt_id == "diff", ["substitutions", "deletions", "insertions"]] = 0
    per_b.loc[per_b.utt_id == "diff", ["wer", "hypothesis_norm"]] = [0.0, "fixed <b>"]
    _, comparison = compute_comparison(per_a, per_b, OPTS, label_a="old", label_b="new")
    _, summary, _ = make_tables()
    document = render_report(
        per_a, summary, transcripts, {}, RUN_INFO, comparison=comparison
    )
    parse(document)
    assert "Comparison: new against old" in document
    assert f"{100 * comparison['delta']:+.2f} points" in document
    assert "new better on 1, worse on 0, same on 3 utterances" in document
    assert "fixed &lt;b&gt;" in document


def test_markdown_summary_and_table_rows():
    _, summary, _ = make_tables()
    markdown = render_markdown_summary(summary, RUN_INFO)
    assert markdown.startswith("## ASR evaluation: whisper-tiny.en")
    assert f"| WER | {100 * summary['wer']:.2f}% (95% CI [" in markdown
    assert "| utterances | 5 (4 ok, 1 failed) |" in markdown
    assert "| RTFx (whole run) | " in markdown
    rows = summary_table_rows(summary)
    assert rows[0]["group"] == "corpus" and rows[0]["n"] == 5
    assert rows[0]["wer"] == round(summary["wer"], 4)
    assert len({tuple(r) for r in rows}) == 1  # same keys in every row
    assert {r["group"] for r in rows} == {
        "corpus",
        "speaker",
        "source_folder",
        "duration_bucket",
    }


# ---------------------------------------------------------------- headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian: apt-get install -y chromium)",
)


def run_chromium(page, tmp_path, *mode: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a local file, console messages logged to stderr."""
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2000",
        *mode,
        page.as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    """Page console output (including uncaught errors and CSP violations)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_console_capture_detects_errors(tmp_path):
    """The detector below must see a page's script error, or the next test is moot."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    result = run_chromium(page, tmp_path, "--dump-dom")
    assert any("Uncaught ReferenceError" in m for m in console_messages(result.stderr))


@needs_chromium
def test_chromium_renders_without_console_errors(report_html, tmp_path):
    result = run_chromium(report_html, tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    # The sort script ran: it marks every header of a sortable table.
    assert '<th class="sortable">utt_id</th>' in result.stdout
    screenshot = tmp_path / "report.png"
    result = run_chromium(report_html, tmp_path, f"--screenshot={screenshot}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
