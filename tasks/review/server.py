"""The review page: a small local HTTP server over one or more run folders.

`serve_review(run_dirs, host, port)` serves the page (static/index.html, .js,
.css), the queue as JSON, each item's audio and a decision endpoint. What keeps
it safe on a shared machine:

* it binds to 127.0.0.1 unless told otherwise (`s2s review --host` with
  `--allow-remote`), and answers only requests whose Host header names it (a
  web page elsewhere cannot reach it by DNS rebinding);
* writes need the per-session token that is embedded in the page and sent back
  in the `X-S2S-Token` header (another site's page cannot read it);
* audio is read from the run's own Parquet, addressed by run index and utt_id;
  no path ever comes from the browser;
* every response carries a Content-Security-Policy that allows only this
  server's own script and style; the page sets all text with `textContent`.
"""

from __future__ import annotations

import functools
import hmac
import html
import io
import json
import re
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import soundfile as sf

from tasks.review.decisions import DecisionsError, decision_row
from tasks.review.queue import item_audio, queue_items
from tasks.review.reviews import append_reviews

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {  # the only files served: name -> content type
    "review.js": "text/javascript; charset=utf-8",
    "review.css": "text/css; charset=utf-8",
}
TOKEN_HEADER = "X-S2S-Token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; media-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
MAX_BODY = 1 << 20  # a decision is a few hundred bytes
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class ReviewState:
    """What the handlers share: the runs, the session token, the reviewer."""

    def __init__(self, run_dirs: list[str], reviewer: str) -> None:
        self.run_dirs = [str(Path(r)) for r in run_dirs]
        self.reviewer = reviewer
        self.token = secrets.token_urlsafe(32)
        self.lock = threading.Lock()  # one queue rebuild at a time
        self.allowed_hosts: set[str] = set()
        self._items: list[dict] | None = None

    def items(self, fresh: bool = False) -> list[dict]:
        """The queue; rebuilt from the runs when `fresh` (the page asks for it)
        or after a decision, else the last one (audio requests come in bursts)."""
        with self.lock:
            if fresh or self._items is None:
                self._items = queue_items(self.run_dirs)
            return self._items

    def decided(self) -> None:
        with self.lock:
            self._items = None

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one state per server
    def wav(self, run: int, kind: str, utt_id: str, seed) -> bytes:
        """An item's audio as 16-bit WAV (every browser plays it; FLAC in
        Parquet is what the run stores). `seed` keys the cache: a regenerated
        TTS item is new audio."""
        audio, rate = item_audio(self.run_dirs[run], kind, utt_id)
        out = io.BytesIO()
        sf.write(out, audio, rate, format="WAV", subtype="PCM_16")
        return out.getvalue()


def page(token: str, runs: list[str]) -> bytes:
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    names = ", ".join(runs)
    return (
        template.replace("{{token}}", html.escape(token, quote=True))
        .replace("{{runs}}", html.escape(names, quote=True))
        .encode()
    )


class ReviewHandler(BaseHTTPRequestHandler):
    state: ReviewState  # set on the subclass made by `make_server`
    server_version = "s2s-review"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib's name
        pass  # the terminal shows the URL, not every request

    # ------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes, ctype: str, extra=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        body = json.dumps(payload, default=str).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_ok(self) -> bool:
        return self.headers.get("Host", "") in self.state.allowed_hosts

    # ------------------------------------------------------------ GET

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib's name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "unknown Host")
        url = urlsplit(self.path)
        if url.path == "/":
            body = page(self.state.token, self.state.run_dirs)
            return self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
        if url.path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        name = url.path.removeprefix("/static/")
        if url.path.startswith("/static/") and name in STATIC_FILES:
            body = (STATIC / name).read_bytes()
            return self._send(HTTPStatus.OK, body, STATIC_FILES[name])
        if url.path == "/api/items":
            return self._json(HTTPStatus.OK, self._queue())
        if url.path == "/api/audio":
            return self._audio(parse_qs(url.query))
        return self._error(HTTPStatus.NOT_FOUND, "not found")

    def _queue(self) -> dict:
        runs = [{"index": i, "name": r} for i, r in enumerate(self.state.run_dirs)]
        return {"runs": runs, "items": self.state.items(fresh=True)}

    def _find(self, run: str, utt_id: str) -> dict | None:
        """The queue's item for (run index, utt_id), or None."""
        if not run.isdigit() or int(run) >= len(self.state.run_dirs):
            return None
        for item in self.state.items():
            if item["run"] == int(run) and item["utt_id"] == utt_id:
                return item
        return None

    def _audio(self, query: dict) -> None:
        item = self._find(query.get("run", [""])[0], query.get("utt_id", [""])[0])
        if item is None:
            return self._error(HTTPStatus.NOT_FOUND, "no such item")
        try:
            key = (item["run"], item["kind"], item["utt_id"], item["seed"])
            data = self.state.wav(*key)
        except KeyError:
            return self._error(HTTPStatus.NOT_FOUND, "the run holds no audio for it")
        extra = {"Accept-Ranges": "bytes"}
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if not match:
            return self._send(HTTPStatus.OK, data, "audio/wav", extra)
        first, last = match.groups()
        size = len(data)
        if first:
            start, end = int(first), int(last) if last else size - 1
        else:  # a suffix: the last N bytes
            start, end = max(0, size - int(last or 0)), size - 1
        end = min(end, size - 1)
        if start > end or start >= size:
            extra["Content-Range"] = f"bytes */{size}"
            unsatisfiable = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
            return self._send(unsatisfiable, b"", "audio/wav", extra)
        extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = data[start : end + 1]
        self._send(HTTPStatus.PARTIAL_CONTENT, body, "audio/wav", extra)

    # ------------------------------------------------------------ POST

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "unknown Host")
        token = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.state.token.encode()):
            return self._error(HTTPStatus.FORBIDDEN, "missing or wrong session token")
        if urlsplit(self.path).path != "/api/decision":
            return self._error(HTTPStatus.NOT_FOUND, "not found")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self._error(HTTPStatus.BAD_REQUEST, "bad body length")
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8"))
            item = self._find(str(body["run"]), str(body["utt_id"]))
            if item is None:
                return self._error(HTTPStatus.NOT_FOUND, "no such item")
            run_dir = self.state.run_dirs[item["run"]]
            row = decision_row(
                Path(run_dir).name,
                item["kind"],
                item["utt_id"],
                str(body["decision"]),
                body.get("text"),
                item["reference"],
                self.state.reviewer,
                item["seed"],
            )
        except (ValueError, KeyError, TypeError, DecisionsError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"bad decision: {exc}")
        append_reviews(run_dir, [row])
        self.state.decided()
        return self._json(HTTPStatus.OK, {"ok": True, "decision": row["decision"]})


def make_server(
    run_dirs: list[str], host: str = "127.0.0.1", port: int = 0, reviewer: str = ""
) -> tuple[ThreadingHTTPServer, ReviewState]:
    """A bound (not yet serving) review server; port 0 picks a free one."""
    state = ReviewState(run_dirs, reviewer)
    handler = type("BoundReviewHandler", (ReviewHandler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    bound = server.server_address[1]
    if host in LOOPBACK:
        names = {host, *LOOPBACK}
    else:  # reached by name or address from elsewhere
        names = {host, socket.gethostname(), socket.getfqdn()}
    state.allowed_hosts = {f"{n}:{bound}" for n in names} | {f"[::1]:{bound}"}
    return server, state


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
