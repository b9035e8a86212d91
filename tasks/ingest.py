"""Stage `ingest`: find audio, decode it, normalise it to 16 kHz mono FLAC in Parquet.

Inputs are directories (searched recursively), single files, or manifests (CSV, JSONL
or Parquet with an `audio_path` column and optional `utt_id`, `reference`,
`speaker`). A directory with a `manifest.csv|jsonl|parquet` at its root takes
`utt_id`, `reference` and `speaker` from it for the files it names. Local paths and
fsspec URIs (`file://`, `memory://`, others when their backend is installed) work.

Every problem with one input becomes a row with status 'failed' and a clear error;
nothing here raises for bad audio.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import soundfile as sf
import soxr
from prefect import task
from prefect.cache_policies import NONE

from s2s_models.audio import FlacAudio
from tasks.shutdown import (
    Progress,
    Stalled,
    StopRequested,
    run_watched,
    stop_requested,
)
from tasks.sources import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_BYTES,
    ReadLimits,
    check_source,
    read_manifest,
)
from tasks.stage import (
    SHARD_MAX_SOURCE_BYTES,
    chunked_by,
    existing_rows,
    fingerprint,
    is_done,
    prepare_stage,
    release_memory,
    write_part,
)

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .w64 .rf64 .caf"
    " .sph .nist .voc .htk".split()
)
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl", "manifest.parquet")
TARGET_SAMPLE_RATE = 16000
HASH_BLOCK_BYTES = 1 << 20
DECODE_BLOCK_SECONDS = 30
# Downstream stages get recordings longer than this as FlacAudio (decoded slice by
# slice) instead of float32 arrays: 2 minutes is 7.7 MB of floats.
STREAM_ABOVE_SECONDS = 120.0


@dataclass(frozen=True)
class SourceItem:
    """One audio input to ingest, as discovered (JSON-friendly for Prefect)."""

    utt_id: str
    path: str  # local path or fsspec URI
    reference: str | None = None
    speaker: str | None = None
    error: str | None = None  # set when discovery already knows the item is bad


@dataclass(frozen=True)
class IngestOptions:
    sample_rate: int = TARGET_SAMPLE_RATE  # Hz of the stored mono audio
    flac_subtype: str = "PCM_16"  # sample format of the stored FLAC
    resample_quality: str = "HQ"  # soxr quality: QQ, LQ, MQ, HQ, VHQ

    def verify(self) -> None:
        assert self.sample_rate > 0, "sample_rate must be positive"
        assert self.flac_subtype in ("PCM_16", "PCM_24"), "FLAC holds 16 or 24 bits"
        assert self.resample_quality in ("QQ", "LQ", "MQ", "HQ", "VHQ")


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


def request_key(
    item: SourceItem,
    options: IngestOptions,
    stat: tuple[int | None, int | None] | None = None,
) -> str:
    """What decides whether an ingested row is still current, without reading audio.
    `stat`: the item's `stat_source` when the caller already has it."""
    size, mtime = stat if stat is not None else stat_source(item.path)
    return fingerprint(
        item.path, size, mtime, item.reference, item.speaker, options.__dict__
    )


# ---------------------------------------------------------------- decoding


def _no_progress() -> None:
    """Default for the `on_block` callbacks: nobody watches."""


def _sha256(
    path: str, max_bytes: int, on_block: Callable[[], None] = _no_progress
) -> tuple[str, int]:
    """sha256 and length of `path`. Reading stops one block past `max_bytes`: a
    file that has grown past the limit since it was checked fails instead."""
    digest, n = hashlib.sha256(), 0
    with fsspec.open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK_BYTES):
            digest.update(block)
            n += len(block)
            if n > max_bytes:
                raise ValueError(f"file grew past the {max_bytes}-byte limit")
            on_block()
    return digest.hexdigest(), n


def _open_checked(snd: sf.SoundFile) -> None:
    if snd.channels < 1:
        raise ValueError("audio has no channels")
    if snd.samplerate <= 0:
        raise ValueError(f"invalid sample rate {snd.samplerate}")


# A decoded length this far from the header's frame count (and by over
# LENGTH_SLACK_S) fails the file: it is damaged, or its header lies.
LENGTH_RATIO = 2.0
LENGTH_SLACK_S = 10.0


def _check_length(decoded: int, header: int, rate: int, final: bool) -> None:
    """Raise ValueError once the frames decoded so far disagree wildly with the
    header (too many: as soon as it happens; too few: at the end)."""
    if header <= 0:
        return  # the header does not say
    slack = LENGTH_SLACK_S * rate
    too_many = decoded > max(LENGTH_RATIO * header, header + slack)
    too_few = final and decoded < min(header / LENGTH_RATIO, header - slack)
    if too_many or too_few:
        raise ValueError(
            f"decoded length disagrees with the header: {decoded / rate:.1f} s "
            f"{'so far' if not final else 'decoded'}, the header says "
            f"{header / rate:.1f} s"
        )


def _mono_blocks(
    snd: sf.SoundFile, sample_rate: int, quality: str, stats: dict
) -> Iterator[np.ndarray]:
    """The open file as float32 mono at ``sample_rate``, DECODE_BLOCK_SECONDS of
    source at a time, until the decoder has no more (not the header's frame
    count: `SoundFile.blocks` would pad a short read of a lying header with
    garbage, block after block). Counts source frames in stats["source_frames"].
    Raises ValueError at the first block with NaN/Inf samples, and when the
    decoded length disagrees wildly with the header."""
    src_rate = snd.samplerate
    stream = (
        None
        if src_rate == sample_rate
        else soxr.ResampleStream(
            src_rate, sample_rate, 1, dtype="float32", quality=quality
        )
    )
    block = max(1, src_rate * DECODE_BLOCK_SECONDS)
    header, decoded = snd.frames, 0
    while (frames := snd.read(block, dtype="float32", always_2d=True)).size:
        decoded += frames.shape[0]
        stats["source_frames"] = decoded
        _check_length(decoded, header, src_rate, final=False)
        mono = frames.mean(axis=1, dtype=np.float32)
        if not np.isfinite(mono).all():
            raise ValueError("audio contains NaN or Inf samples")
        yield mono if stream is None else stream.resample_chunk(mono)
    _check_length(decoded, header, src_rate, final=True)
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def transcode_to_flac(
    path: str,
    sample_rate: int,
    quality: str = "HQ",
    subtype: str = "PCM_16",
    on_block: Callable[[], None] = _no_progress,
) -> tuple[bytes, int, dict]:
    """Decode, downmix, resample and FLAC-encode `path` one block at a time.

    Memory follows the FLAC output and one DECODE_BLOCK_SECONDS block, not the
    waveform: an hour of 44.1 kHz stereo costs about the size of its 16 kHz FLAC,
    not 0.9 GB of floats. Returns (flac bytes, n_samples, info) where info has the
    source format, sample rate, channel count and decoded frames. Raises
    ValueError for audio we refuse (no channels, NaN/Inf samples, a length that
    disagrees wildly with the header). `on_block` is called after each block.
    """
    out = io.BytesIO()
    n_samples = 0
    with fsspec.open(path, "rb") as raw, sf.SoundFile(raw) as snd:
        _open_checked(snd)
        info = {
            "format": f"{snd.format}/{snd.subtype}",
            "sample_rate": snd.samplerate,
            "channels": snd.channels,
            "source_frames": 0,
        }
        with sf.SoundFile(
            out, "w", sample_rate, 1, subtype=subtype, format="FLAC"
        ) as flac:
            for block in _mono_blocks(snd, sample_rate, quality, info):
                flac.write(np.clip(block, -1.0, 1.0))
                n_samples += block.size
                on_block()
    return out.getvalue(), n_samples, info


def encode_flac(audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(
        buf, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype=subtype
    )
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """Inverse of `encode_flac`: (float32 mono samples, sample rate)."""
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return audio, rate


def iter_ingest_audio(
    ingest_part: str, utt_ids: list[str], stream_above_s: float = STREAM_ABOVE_SECONDS
) -> Iterator[tuple[str, str, np.ndarray | FlacAudio]]:
    """(utt_id, input_key, 16 kHz audio) of the given rows of an ingest part, in
    part order, decoded one at a time: what every downstream stage task starts
    from. Parts are written in small row groups, so only one group's FLAC bytes
    are in memory at once.

    Audio is a float32 array, or, for recordings longer than `stream_above_s`
    (by the row's stored length), a `FlacAudio` that the stages read slice by
    slice, so a long file never sits in memory as floats.
    """
    import pyarrow.parquet as pq

    wanted = set(utt_ids)
    part = pq.ParquetFile(ingest_part)
    for group in range(part.num_row_groups):
        ids = part.read_row_group(group, columns=["utt_id"]).column(0).to_pylist()
        if wanted.isdisjoint(ids):
            continue
        columns = ["utt_id", "input_key", "num_samples", "sampling_rate", "audio"]
        table = part.read_row_group(group, columns=columns)
        rows = [row for row in table.to_pylist() if row["utt_id"] in wanted]
        del table  # Arrow's copy and its decompression buffers: give them back now
        pa.default_memory_pool().release_unused()
        rows.reverse()
        while rows:  # popped, so a yielded recording's bytes can go once it is done
            row = rows.pop()
            data = row["audio"]["bytes"]
            if row["num_samples"] > stream_above_s * row["sampling_rate"]:
                audio = FlacAudio(data)
            else:
                audio, _ = decode_flac(data)
            yield row["utt_id"], row["input_key"], audio


def read_ingest_audio(
    ingest_part: str, utt_ids: list[str], stream_above_s: float = STREAM_ABOVE_SECONDS
) -> list[tuple[str, str, np.ndarray | FlacAudio]]:
    """All of `iter_ingest_audio` at once (the ASR batches across recordings)."""
    return list(iter_ingest_audio(ingest_part, utt_ids, stream_above_s))


def _failed_row(item: SourceItem, req_key: str, error: str, **known) -> dict:
    return {
        "utt_id": item.utt_id,
        "input_key": None,
        "request_key": req_key,
        "source_path": item.path,
        "reference": item.reference,
        "speaker": item.speaker,
        "status": "failed",
        "error": error,
        **known,
    }


# Fault injection for the termination tests: with this set, ingest reads every
# input unchecked and unwatched, as it did before special files were refused, so
# a FIFO blocks a shard's thread in open() for good.
UNGUARDED_READS_ENV = "S2S_FAILPOINT_UNGUARDED_READS"


def ingest_one(
    item: SourceItem,
    req_key: str,
    options: IngestOptions,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> dict:
    """Ingest one source into a row of the `ingest` schema.

    Bad input never raises: a missing, special (FIFO, socket, device) or too large
    file, undecodable audio, and an item that makes no progress for
    `limits.stall_timeout_s` each become a failed row. Raises `StopRequested` when
    the run stops while the item is in hand.
    """
    if item.error:
        return _failed_row(item, req_key, item.error)
    if os.environ.get(UNGUARDED_READS_ENV):
        return _read_source(item, req_key, options, limits.max_bytes, Progress())
    problem, size = check_source(item.path, limits.max_bytes)
    if problem:
        return _failed_row(item, req_key, problem, source_size=size)
    try:
        return run_watched(
            lambda progress: _read_source(
                item, req_key, options, limits.max_bytes, progress
            ),
            limits.stall_timeout_s,
            item.utt_id,
        )
    except Stalled as exc:
        return _failed_row(
            item,
            req_key,
            f"stalled: {exc} while reading or decoding "
            f"(--stall-timeout {limits.stall_timeout_s:g} s)",
        )


def _read_source(
    item: SourceItem,
    req_key: str,
    options: IngestOptions,
    max_bytes: int,
    progress: Progress,
) -> dict:
    """Hash and transcode a source that passed `check_source` (the body of
    `ingest_one`, run under its watchdog)."""
    size, mtime = stat_source(item.path)
    try:
        sha, n_bytes = _sha256(item.path, max_bytes, progress.touch)
    except Exception as exc:  # noqa: BLE001 - permission, missing, I/O
        return _failed_row(
            item, req_key, f"cannot read file: {type(exc).__name__}: {exc}"
        )
    known = {"source_size": n_bytes, "source_mtime_ns": mtime, "source_sha256": sha}
    if n_bytes == 0:
        return _failed_row(item, req_key, "empty file (0 bytes)", **known)
    try:
        flac, n_samples, info = transcode_to_flac(
            item.path,
            options.sample_rate,
            options.resample_quality,
            options.flac_subtype,
            progress.touch,
        )
    except sf.LibsndfileError as exc:  # its str() names a Python file object
        return _failed_row(
            item, req_key, f"cannot decode audio: {exc.error_string}", **known
        )
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        return _failed_row(item, req_key, f"cannot decode audio: {exc}", **known)
    if n_samples == 0:
        return _failed_row(item, req_key, "audio has zero samples", **known)
    name = posixpath.basename(item.utt_id) + ".flac"
    return {
        "utt_id": item.utt_id,
        "input_key": fingerprint(sha, options.__dict__),
        "request_key": req_key,
        "source_path": item.path,
        **known,
        "source_format": info["format"],
        "source_sample_rate": info["sample_rate"],
        "source_channels": info["channels"],
        "duration_s": info["source_frames"] / info["sample_rate"],
        "num_samples": int(n_samples),
        "sampling_rate": options.sample_rate,
        "audio": {
            "bytes": flac,
            "path": name,
        },
        "reference": item.reference,
        "speaker": item.speaker,
        "status": "ok",
        "error": None,
    }


def compute_ingest(
    items: list[SourceItem],
    request_keys: list[str],
    options: IngestOptions,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> list[dict]:
    """Pure stage logic: one row per item, failures included; when the run is
    stopping, the rows of the items done so far."""
    options.verify()
    limits.verify()
    rows = []
    for item, key in zip(items, request_keys, strict=True):
        if stop_requested():
            break
        try:
            rows.append(ingest_one(item, key, options, limits))
        except StopRequested:
            break
    return rows


def _unless_stopping(task, task_run, state) -> bool:
    """Retry a failed shard, unless it failed because the run is stopping."""
    return not stop_requested()


@task(
    name="ingest-shard",
    cache_policy=NONE,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_unless_stopping,
)
def ingest_shard(
    run_dir: str,
    part_index: int,
    items: list[dict],
    request_keys: list[str],
    options: dict,
    limits: dict | None = None,
) -> str:
    """Ingest one shard of items and write it as one Parquet part. A run that is
    stopping writes the rows done so far, then raises `StopRequested`."""
    from tasks.schemas import INGEST

    rows = compute_ingest(
        [SourceItem(**d) for d in items],
        request_keys,
        IngestOptions(**options),
        ReadLimits(**(limits or {})),
    )
    path = ""
    if rows:
        table = pa.Table.from_pylist(rows, schema=INGEST)
        path = str(write_part(run_dir, "ingest", part_index, table))
    release_memory()
    if len(rows) < len(items):
        raise StopRequested(f"run stopping: {len(rows)} of {len(items)} items done")
    return path


def item_to_dict(item: SourceItem) -> dict:
    return json.loads(json.dumps(item.__dict__))


@dataclass(frozen=True)
class IngestPlan:
    shards: list[list[SourceItem]]  # items still to ingest, shard by shard
    request_keys: list[list[str]]  # their request keys, shard by shard
    wanted: dict[str, str]  # utt_id -> request_key of every current item
    n_items: int  # all discovered items
    n_todo: int


def plan_ingest(
    run_dir: str,
    inputs: list[str],
    options: IngestOptions,
    shard_size: int,
    retry_failed: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IngestPlan:
    """Discover the inputs and decide which items a run still has to ingest
    (`max_bytes`: manifests larger than this are refused)."""
    items = discover_inputs(inputs, max_bytes)
    done = existing_rows(prepare_stage(run_dir, "ingest"), key_column="request_key")
    wanted, todo, todo_keys, todo_bytes = {}, [], [], []
    for item in items:
        stat = stat_source(item.path)
        key = request_key(item, options, stat)
        wanted[item.utt_id] = key
        if not is_done(done.get(item.utt_id), key, retry_failed):
            todo.append(item)
            todo_keys.append(key)
            todo_bytes.append(float(stat[0] or 0))
    # shards of at most shard_size files and SHARD_MAX_SOURCE_BYTES: a shard holds
    # its encoded output until it is written
    groups = chunked_by(
        list(range(len(todo))), todo_bytes, shard_size, SHARD_MAX_SOURCE_BYTES
    )
    return IngestPlan(
        [[todo[i] for i in group] for group in groups],
        [[todo_keys[i] for i in group] for group in groups],
        wanted,
        len(items),
        len(todo),
    )
