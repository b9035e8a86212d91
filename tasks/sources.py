"""What ingest may read, decided before it reads: input file checks, manifest rows.

Only regular files are read. A named pipe, socket or device (also behind a
symlink, such as one to /dev/zero) is refused by `stat` before anything opens it:
opening a FIFO blocks until someone writes to it, and a device can be read
forever. A file larger than `ReadLimits.max_bytes` is refused unread.

Manifests are read row by row where the format allows (CSV, JSONL): a row that
cannot be parsed becomes an error naming the manifest and its line, and the other
rows go on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec

DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: the most a RIFF WAV can address
DEFAULT_STALL_S = 120.0


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on reading one input. Not part of any row's key: changing them redoes
    nothing by itself; `--retry-failed` redoes the items they refused."""

    max_bytes: int = DEFAULT_MAX_BYTES  # larger source files fail unread
    stall_timeout_s: float = DEFAULT_STALL_S  # no read/decode progress this long: fail

    def verify(self) -> None:
        assert self.max_bytes > 0, "max_bytes must be positive"
        assert self.stall_timeout_s > 0, "stall_timeout_s must be positive"


DEFAULT_LIMITS = ReadLimits()


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _size_text(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def check_source(path: str, max_bytes: int) -> tuple[str | None, int | None]:
    """(why `path` must not be read, or None; its size in bytes when known).

    Local paths are decided by `os.stat`, which follows symlinks and opens nothing;
    other fsspec URIs by the filesystem's `info`.
    """
    try:
        if is_local(path):
            local = path.removeprefix("file://")
            st = os.stat(local)
            if not stat.S_ISREG(st.st_mode):
                via = ""
                if os.path.islink(local):
                    via = f" (symlink to {os.path.realpath(local)})"
                return f"not a regular file: {_kind(st.st_mode)}{via}", None
            size = st.st_size
        else:
            fs, p = fsspec.core.url_to_fs(path)
            info = fs.info(p)
            if info.get("type", "file") != "file":
                return f"not a regular file: {info.get('type')}", None
            size = int(info.get("size") or 0)
    except FileNotFoundError as exc:
        return f"cannot read file: FileNotFoundError: {exc}", None
    except OSError as exc:
        return f"cannot read file: {type(exc).__name__}: {exc}", None
    if size > max_bytes:
        return (
            f"file is {_size_text(size)}, over the {_size_text(max_bytes)} limit "
            "(--max-file-size; then rerun with --retry-failed)",
            size,
        )
    return None, size


# ---------------------------------------------------------------- manifests

ManifestRow = tuple[int, dict | str]  # (line or row number, record or error)


def _json_lines(raw: io.BufferedIOBase) -> Iterator[ManifestRow]:
    for number, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError as exc:
            yield number, f"not UTF-8 ({exc.reason} at byte {exc.start})"
            continue
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(record, dict):
            yield number, f"not a JSON object: {text[:60]}"
            continue
        yield number, record


def _csv_rows(raw: io.BufferedIOBase, header: list[str]) -> Iterator[ManifestRow]:
    """CSV rows as dicts keyed by the header, which is read into `header`; quoted
    fields may span lines (a row is numbered by the line it starts on)."""
    line_no, start = 0, 0  # the last line read; the first line of the current row
    bad: list[ManifestRow] = []  # undecodable lines, reported in order

    def lines() -> Iterator[str]:
        nonlocal line_no, start
        for line in raw:
            line_no += 1
            try:
                text = line.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                bad.append((line_no, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            start = start or line_no
            yield text

    reader = csv.reader(lines())
    while True:
        start = 0
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            fields = exc
        yield from bad
        bad.clear()
        if isinstance(fields, csv.Error):
            yield start, f"not CSV: {fields}"
        elif not fields or fields == [""]:
            continue
        elif not header:
            header.extend(fields)
        elif len(fields) != len(header):
            yield start, f"{len(fields)} fields, the header has {len(header)}"
        else:
            yield start, dict(zip(header, fields, strict=True))
    yield from bad


def read_manifest(uri: str, max_bytes: int) -> tuple[list[str], list[ManifestRow]]:
    """(column names, rows) of a manifest: a row is (line, record or error) for CSV
    and JSONL, (row number, record) for Parquet. JSONL's columns are every key its
    records use. Raises OSError/ValueError when the manifest as a whole cannot be
    read (refused by `check_source`, unreadable, not Parquet).
    """
    problem, _ = check_source(uri, max_bytes)
    if problem:
        raise ValueError(problem)
    lower = uri.lower()
    with fsspec.open(uri, "rb") as raw:
        if lower.endswith(".csv"):
            header: list[str] = []
            rows = list(_csv_rows(raw, header))
            return header, rows
        if lower.endswith(".jsonl"):
            rows = list(_json_lines(raw))
            keys = (r for _, r in rows if isinstance(r, dict))
            return list(dict.fromkeys(k for record in keys for k in record)), rows
        import pandas as pd

        frame = pd.read_parquet(raw)
    records = frame.to_dict("records")
    return list(frame.columns), list(enumerate(records, start=1))
