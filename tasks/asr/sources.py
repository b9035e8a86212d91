"""What ingest reads: discovery of the inputs, and what may be read, decided before
it is read (input file checks, manifest rows).

Inputs are directories (searched recursively), single files, or manifests (CSV, JSONL
or Parquet with an `audio_path` column and optional `utt_id`, `reference`,
`speaker`). A directory with a `manifest.csv|jsonl|parquet` at its root takes
`utt_id`, `reference` and `speaker` from it for the files it names. Local paths and
fsspec URIs (`file://`, `memory://`, others when their backend is installed) work.
Every problem with one input becomes an item with an error, never an exception.

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
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd

DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: the most a RIFF WAV can address
DEFAULT_STALL_S = 120.0
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .w64 .rf64 .caf"
    " .sph .nist .voc .htk".split()
)
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl", "manifest.parquet")


@dataclass(frozen=True)
class SourceItem:
    """One audio input to ingest, as discovered (JSON-friendly for Prefect)."""

    utt_id: str
    path: str  # local path or fsspec URI
    reference: str | None = None
    speaker: str | None = None
    error: str | None = None  # set when discovery already knows the item is bad


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


# ---------------------------------------------------------------- discovery


def _is_manifest(path: str) -> bool:
    return path.lower().endswith((".csv", ".jsonl", ".parquet"))


def _clean(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text if text != "" else None


def _join(folder: str, rel: str) -> str:
    """Join a manifest-relative path; URIs keep their protocol."""
    if "://" in folder:
        proto, rest = folder.split("://", 1)
        return f"{proto}://{posixpath.normpath(posixpath.join(rest, rel))}"
    return os.path.normpath(os.path.join(folder, rel))


def _items_from_manifest(uri: str, max_bytes: int) -> list[SourceItem]:
    """One item per manifest row; a row that cannot be parsed is a failed item
    named `<manifest>:<line>`, and the rows around it go on."""
    try:
        columns, rows = read_manifest(uri, max_bytes)
    except Exception as exc:  # noqa: BLE001 - any read failure is a bad manifest
        return [SourceItem(uri, uri, error=f"cannot read manifest: {exc}")]
    if "audio_path" not in columns:
        return [
            SourceItem(
                uri, uri, error=f"manifest lacks column 'audio_path' (has: {columns})"
            )
        ]
    folder = posixpath.dirname(uri) if "://" in uri else os.path.dirname(uri)
    items = []
    for line, row in rows:
        if isinstance(row, str):  # the row's parse error
            items.append(
                SourceItem(f"{uri}:{line}", uri, error=f"{uri} line {line}: {row}")
            )
            continue
        items.append(_item_from_row(row, uri, folder))
    return items


def _item_from_row(row: dict, uri: str, folder: str) -> SourceItem:
    rel = _clean(row.get("audio_path")) or ""
    utt_id = _clean(row.get("utt_id")) or os.path.splitext(rel)[0] or uri
    ref, spk = _clean(row.get("reference")), _clean(row.get("speaker"))
    if not rel:
        return SourceItem(utt_id, uri, ref, spk, "empty audio_path")
    is_abs = os.path.isabs(rel) or "://" in rel
    path = rel if is_abs else _join(folder, rel)
    escapes = not is_abs and ".." in rel.replace("\\", "/").split("/")
    if escapes and not path.startswith(folder.rstrip("/") + "/"):
        return SourceItem(
            utt_id, path, ref, spk, f"path escapes the manifest folder: {rel}"
        )
    return SourceItem(utt_id, path, ref, spk)


def _walk_audio(uri: str) -> list[str]:
    """Audio files under a directory, sorted; never follows symlinked folders."""
    if "://" not in uri or uri.startswith("file://"):
        root = uri.removeprefix("file://")
        found = []
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            found += [
                os.path.join(folder, f)
                for f in files
                if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS
            ]
        return sorted(found)
    fs, path = fsspec.core.url_to_fs(uri)
    proto = uri.split("://", 1)[0]
    return sorted(
        f"{proto}://{p.lstrip('/')}" if proto != "memory" else f"memory://{p}"
        for p in fs.find(path)
        if posixpath.splitext(p)[1].lower() in AUDIO_EXTENSIONS
    )


def _items_from_directory(uri: str, max_bytes: int) -> list[SourceItem]:
    root = uri.rstrip("/")
    local_root = root.removeprefix("file://")
    fs, _ = fsspec.core.url_to_fs(uri)
    sidecar: dict[str, SourceItem] = {}
    items = []  # the sidecar's unusable rows, then one item per audio file
    for name in MANIFEST_NAMES:
        candidate = _join(root, name)
        if fs.exists(candidate.removeprefix("file://")) or fs.exists(candidate):
            for item in _items_from_manifest(candidate, max_bytes):
                if item.path == candidate:  # names no audio file: keep it as it is
                    items.append(item)
                else:
                    sidecar[os.path.normpath(item.path.removeprefix("file://"))] = item
            break
    for path in _walk_audio(uri):
        key = os.path.normpath(path.removeprefix("file://"))
        if key in sidecar:
            items.append(sidecar[key])
            continue
        rel = (
            os.path.relpath(key, local_root)
            if "://" not in root
            else path[len(root) + 1 :]
        )
        items.append(SourceItem(os.path.splitext(rel)[0].replace(os.sep, "/"), path))
    return items


def discover_inputs(
    inputs: list[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> list[SourceItem]:
    """Expand directories, files and manifests into items with unique `utt_id`s.

    A later item whose `utt_id` was already taken becomes a failed item naming the
    first one; a missing input, a manifest that cannot be read (or is larger than
    `max_bytes`) and each manifest row that cannot be parsed become failed items.
    """
    items: list[SourceItem] = []
    for uri in inputs:
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.isdir(path):
            items += _items_from_directory(uri, max_bytes)
        elif _is_manifest(uri) and fs.exists(path):
            items += _items_from_manifest(uri, max_bytes)
        else:
            stem = posixpath.splitext(posixpath.basename(path))[0]
            error = (
                None if fs.exists(path) or os.path.islink(path) else "file not found"
            )
            items.append(SourceItem(stem, uri, error=error))
    first_seen: dict[str, str] = {}
    unique = []
    for item in items:
        if item.utt_id in first_seen:  # a failed item keeps its own error
            item = SourceItem(
                f"{item.utt_id}#dup{len(unique)}",
                item.path,
                item.reference,
                item.speaker,
                item.error
                or f"duplicate utt_id {item.utt_id!r} "
                f"(first used by {first_seen[item.utt_id]})",
            )
        first_seen.setdefault(item.utt_id, item.path)
        unique.append(item)
    return unique


def stat_source(path: str) -> tuple[int | None, int | None]:
    """(size, mtime_ns) of a source, or (None, None) when it cannot be stat'ed."""
    try:
        if "://" not in path or path.startswith("file://"):
            st = os.stat(path.removeprefix("file://"))
            return st.st_size, st.st_mtime_ns
        fs, p = fsspec.core.url_to_fs(path)
        info = fs.info(p)
        mtime = info.get("mtime") or info.get("created") or info.get("LastModified")
        return int(info.get("size") or 0), int(
            pd.Timestamp(mtime).value
        ) if mtime else None
    except Exception:  # noqa: BLE001 - unknown stat: the item is simply redone
        return None, None
