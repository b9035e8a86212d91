"""The review loop end to end: a real transcription run on bundled speech and a
real TTS run with the bundled default voice (Griffin-Lim), decisions applied from
a file and made in a real browser (Debian's chromium through Selenium), the
evaluation re-scored without decoding, and the closed loop of `s2s synthesize`.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import threading

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from flows.cli_review import apply_decisions
from flows.regenerate_tts_dataset import read_attempts, regenerate_tts_dataset
from flows.review_run import review_run
from flows.transcribe_corpus import transcribe_corpus
from tasks.asr.evaluation import EVALUATION
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.review.decisions import DecisionsError
from tasks.review.reviews import REVIEWS, read_reviews
from tasks.stage import list_parts, read_stage, read_stage_record
from tasks.tts.attempts import TTS_ATTEMPTS, LoopOptions
from tasks.tts.evaluation import TTS_EVALUATION, TtsEvalOptions
from tasks.tts.mels import MELS
from tests.conftest import SAMPLES

pytestmark = pytest.mark.required  # the review loop is a main job: never skipped on CI

ASR_FILES = ("jfk.flac", "LJ001-0001.wav")
LJ = "LJ001-0001"  # tiny.en writes "concern" where the reader said "concerned"
TTS_TEXTS = (
    "The quick brown fox jumps over the lazy dog.\n"
    "She sells sea shells by the sea shore.\n"
    "Peter Piper picked a peck of pickled peppers.\n"
)
NO_DNSMOS = TtsEvalOptions(dnsmos=False)
LOOP = LoopOptions(max_round_trip_wer=0.0, max_attempts=2)


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory, prefect_harness) -> str:
    corpus = tmp_path_factory.mktemp("speech")
    lines = (SAMPLES / "manifest.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines if line.startswith(ASR_FILES)]
    (corpus / "manifest.csv").write_text("\n".join(keep) + "\n")
    for name in ASR_FILES:
        shutil.copy(SAMPLES / name, corpus / name)
    run = str(tmp_path_factory.mktemp("asr") / "run")
    transcribe_corpus([str(corpus)], run)
    return run


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory, prefect_harness) -> tuple[str, dict]:
    """A closed-loop run: every item whose round trip is not perfect is tried
    again once with a new seed."""
    folder = tmp_path_factory.mktemp("tts")
    texts = folder / "texts.txt"
    texts.write_text(TTS_TEXTS)
    run = str(folder / "run")
    summary = regenerate_tts_dataset(
        [str(texts)], run, evaluation=NO_DNSMOS, vocoder="griffinlim", loop=LOOP
    )
    return run, summary


def _copy(run: str, tmp_path, name: str) -> str:
    return str(shutil.copytree(run, tmp_path / name))


def _md5s(run: str) -> dict[str, str]:
    return {
        p.name: hashlib.md5(p.read_bytes()).hexdigest()
        for p in list_parts(run, TRANSCRIPTS)
    }


def _evaluation(run: str) -> dict:
    table = read_stage(
        run, EVALUATION, ["utt_id", "wer", "wer_before_review", "review"]
    )
    return {r["utt_id"]: r for r in table.to_pylist()}


def test_apply_corrects_wer_without_decoding(asr_run, tmp_path, capsys):
    run = _copy(asr_run, tmp_path, "asr")
    before = _md5s(run)
    hypothesis = read_stage(run, TRANSCRIPTS, ["utt_id", "text"]).to_pylist()
    lj_text = next(r["text"] for r in hypothesis if r["utt_id"] == LJ)
    assert _evaluation(run)[LJ]["wer"] > 0

    bad = {
        "unknown.csv": b"utt_id,decision,text\nnobody,accept,\n",
        "latin1.csv": b"utt_id,decision,text\njfk,correct,caf\xe9\n",
        "columns.csv": b"utt_id,verdict\njfk,accept\n",
        "decision.csv": f"utt_id,decision,text\n{LJ},accept,\njfk,maybe,\n".encode(),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        assert main(["review", run, "--apply", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("nothing written") and len(err.splitlines()) == 1
        assert not list_parts(run, REVIEWS)

    good = tmp_path / "decisions.csv"
    good.write_text(
        f'utt_id,decision,text\n{LJ},correct,"{lj_text.strip()}"\njfk,accept,\n'
    )
    n, part = apply_decisions(run, str(good), "tester")
    assert n == 2 and part.parent.name == REVIEWS.name
    assert main(["report", run]) == 0
    out = capsys.readouterr().out
    assert "after review" in out and "WER before review (1 accepted, 1 corrected" in out

    scores = _evaluation(run)
    assert scores[LJ]["review"] == "correct" and scores[LJ]["wer"] == 0.0
    assert scores[LJ]["wer_before_review"] > 0
    assert scores["jfk"]["review"] == "accept"
    assert scores["jfk"]["wer"] == scores["jfk"]["wer_before_review"]
    assert _md5s(run) == before  # re-scored, never decoded again
    report = (tmp_path / "asr" / "report.html").read_text()
    assert "WER before review" in report and "WER after review" in report

    queue = tmp_path / "queue.csv"
    assert main(["review", run, "--export", str(queue)]) == 0
    exported = {r["utt_id"]: r for r in csv.DictReader(queue.open())}
    assert set(exported) == {"jfk", LJ}
    assert exported[LJ]["decision"] == "correct"
    assert exported[LJ]["reference"] == lj_text.strip()

    # a later decision wins; a rejected item leaves the score, history stays
    (tmp_path / "later.csv").write_text(f"utt_id,decision,text\n{LJ},reject,\n")
    apply_decisions(run, str(tmp_path / "later.csv"), "second reviewer")
    review_run(run_dir=run)
    scores = _evaluation(run)
    assert scores[LJ]["review"] == "reject" and scores[LJ]["wer"] is None
    assert len(read_reviews(run)) == 3 and len(list_parts(run, REVIEWS)) == 2
    with pytest.raises(DecisionsError, match="not UTF-8"):
        apply_decisions(run, str(tmp_path / "latin1.csv"), "x")


def test_closed_loop_keeps_the_best_attempt(tts_run, tmp_path):
    run, summary = tts_run
    attempts = read_attempts(run)
    by_item: dict[str, list[dict]] = {}
    for row in attempts:
        by_item.setdefault(row["utt_id"], []).append(row)
    assert len(by_item) == 3
    final = {r["utt_id"]: r for r in read_stage(run, TTS_EVALUATION).to_pylist()}
    seeds = {r["utt_id"]: r["seed"] for r in read_stage(run, MELS).to_pylist()}
    retried = [u for u, rows in by_item.items() if len(rows) == 2]
    assert retried, "with a threshold of 0 some items fail their round trip"
    for utt_id, rows in by_item.items():
        first = min(rows, key=lambda r: r["attempt"])
        assert first["attempt"] == 1
        assert len(rows) == (2 if first["wer"] > 0 else 1)
        kept = [r for r in rows if r["kept"]]
        assert len(kept) == 1
        assert kept[0]["wer"] == min(r["wer"] for r in rows)  # the best is kept
        assert seeds[utt_id] == kept[0]["seed"]  # ... and is what the run holds
        assert final[utt_id]["wer"] == pytest.approx(kept[0]["wer"])
    record = read_stage_record(run, TTS_ATTEMPTS)
    assert record["parameters"]["max_attempts"] == 2
    assert record["n_rows"] == len(attempts)
    att = summary["evaluation"]["attempts"]
    n_passed = sum(att["passed_at_attempt"].values())
    assert n_passed + len(att["never_passed"]) == 3
    assert att["n_attempts"] == len(attempts) and att["n_regenerated"] == len(retried)
    with open(summary["report"]) as fh:
        assert "never passed" in fh.read() or not att["never_passed"]


def test_rejected_tts_item_is_regenerated_and_accepted_never(tts_run, tmp_path):
    run = _copy(tts_run[0], tmp_path, "tts")
    texts = tmp_path / "texts.txt"
    texts.write_text(TTS_TEXTS)
    mels = {r["utt_id"]: r for r in read_stage(run, MELS).to_pylist()}
    rejected, accepted, *_ = sorted(mels)
    (tmp_path / "d.csv").write_text(
        f"utt_id,decision,text\n{rejected},reject,\n{accepted},accept,\n"
    )
    apply_decisions(run, str(tmp_path / "d.csv"), "tester")
    summary = regenerate_tts_dataset(
        [str(texts)], run, evaluation=NO_DNSMOS, vocoder="griffinlim", loop=LOOP
    )
    after = {r["utt_id"]: r for r in read_stage(run, MELS).to_pylist()}
    tried = {r["seed"] for r in read_attempts(run) if r["utt_id"] == rejected}
    assert after[rejected]["seed"] != mels[rejected]["seed"]  # a new seed
    assert mels[rejected]["seed"] in tried and after[rejected]["seed"] in tried
    for utt_id in (accepted, *_):
        assert after[utt_id]["input_key"] == mels[utt_id]["input_key"]
    assert summary["stages"][MELS.name]["n_todo"] >= 1
    # rerun: nothing left to do (accepted stays, the rejected one keeps its new seed)
    again = regenerate_tts_dataset(
        [str(texts)], run, evaluation=NO_DNSMOS, vocoder="griffinlim", loop=LOOP
    )
    assert again["stages"][MELS.name]["n_todo"] == 0


# ---------------------------------------------------------------- the browser


def _browser():
    """Headless Debian chromium through chromedriver, or skip saying why."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def _wait(browser, script: str, *args, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(
        lambda b: b.execute_script(script, *args)
    )


def _status(browser, text: str) -> None:
    _wait(
        browser,
        "return document.getElementById('status').textContent.includes(arguments[0])",
        text,
    )


def _show(browser, kind: str, state: str, search: str) -> None:
    """Set the filters and wait for the list to show `search`'s item."""
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "f-kind")).select_by_value(kind)
    Select(browser.find_element("id", "f-state")).select_by_value(state)
    box = browser.find_element("id", "f-text")
    box.clear()
    box.send_keys(search)
    _wait(
        browser,
        "return document.getElementById('item-title').textContent === arguments[0]",
        search,
    )


def test_review_page_in_a_real_browser(asr_run, tts_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tasks.review.server import make_server, server_url

    runs = [_copy(asr_run, tmp_path, "asr"), _copy(tts_run[0], tmp_path, "tts")]
    server, state = make_server(runs, reviewer="browser")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    browser = _browser()
    try:
        url = server_url(server)
        browser.get(url)
        _wait(browser, "return document.querySelectorAll('#queue li').length === 5")

        # play the transcription item's audio: it loads and has a duration
        _show(browser, "asr", "pending", LJ)
        duration = _wait(
            browser,
            "const p = document.getElementById('player'); p.play();"
            "return p.readyState >= 1 && p.duration > 0 ? p.duration : false;",
        )
        assert duration == pytest.approx(10.0, abs=1.0)  # LJ001-0001: 9.9 s

        # correct its reference: e, type, Ctrl+Enter
        body = browser.find_element(By.TAG_NAME, "body")
        body.click()
        body.send_keys("e")
        editor = browser.find_element("id", "editor")
        editor.send_keys(Keys.CONTROL, "a")
        editor.send_keys("Printing <b>in</b> the only sense")
        editor.send_keys(Keys.CONTROL, Keys.ENTER)
        _wait(
            browser,
            "return /saved/.test(document.getElementById('status').textContent)",
        )

        # reject a synthesized item with r
        tts_id = sorted(r["utt_id"] for r in read_stage(runs[1], MELS).to_pylist())[0]
        _show(browser, "tts", "pending", tts_id)
        browser.find_element(By.TAG_NAME, "body").send_keys("r")
        _wait(
            browser,
            "return /reject saved/.test(document.getElementById('status').textContent)",
        )

        # reload: both are done
        browser.refresh()
        _wait(browser, "return document.querySelectorAll('#queue li').length > 0")
        _show(browser, "asr", "done", LJ)
        ref = browser.find_element("id", "reference").text
        assert ref == "Printing <b>in</b> the only sense"  # shown as text, not HTML
        assert "correct" in browser.find_element("id", "item-meta").text
        _show(browser, "tts", "done", tts_id)
        assert "reject" in browser.find_element("id", "item-meta").text

        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()

    asr_rows, tts_rows = read_reviews(runs[0]), read_reviews(runs[1])
    assert [(r["utt_id"], r["decision"], r["text"]) for r in asr_rows] == [
        (LJ, "correct", "Printing <b>in</b> the only sense")
    ]
    assert [(r["utt_id"], r["decision"], r["kind"]) for r in tts_rows] == [
        (tts_id, "reject", "tts")
    ]
    assert tts_rows[0]["seed"] is not None and asr_rows[0]["reviewer"] == "browser"


def test_server_refuses_writes_without_token_and_foreign_hosts(asr_run, tmp_path):
    import http.client
    import json

    from tasks.review.server import CSP, TOKEN_HEADER, make_server

    run = _copy(asr_run, tmp_path, "asr")
    server, state = make_server([run])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def request(method, path, headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()

    try:
        decision = json.dumps({"run": 0, "utt_id": "jfk", "decision": "accept"})
        kinds = {"Content-Type": "application/json"}
        status, _, _ = request("POST", "/api/decision", kinds, decision)
        assert status == 403
        wrong = {**kinds, TOKEN_HEADER: "guess"}
        assert request("POST", "/api/decision", wrong, decision)[0] == 403
        evil = {"Host": f"evil.example:{port}"}
        assert request("GET", "/api/items", evil)[0] == 403
        status, headers, _ = request("GET", "/")
        assert status == 200 and headers["Content-Security-Policy"] == CSP
        assert request("GET", "/static/../../README.md")[0] == 404
        assert request("GET", "/api/audio?run=0&utt_id=../../etc/passwd")[0] == 404
        status, headers, body = request(
            "GET", "/api/audio?run=0&utt_id=jfk", {"Range": "bytes=0-99"}
        )
        assert status == 206 and len(body) == 100 and body[:4] == b"RIFF"
        assert headers["Content-Range"].startswith("bytes 0-99/")
        assert not list_parts(run, REVIEWS)
        good = {**kinds, TOKEN_HEADER: state.token}
        assert request("POST", "/api/decision", good, decision)[0] == 200
        assert [r["decision"] for r in read_reviews(run)] == ["accept"]
    finally:
        server.shutdown()
        server.server_close()
    assert pq.read_schema(list_parts(run, REVIEWS)[0]).metadata[b"s2s.stage"]
