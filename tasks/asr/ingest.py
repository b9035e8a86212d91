"""Stage `ingest`: decode every input and store it as 16 kHz mono FLAC in Parquet.

What is read, and how inputs are found, is `tasks.asr.sources`. Every problem with
one input becomes a row with status 'failed' and a clear error; nothing here
raises for bad audio. A row has two keys: `request_key` (path, size, mtime,
reference, speaker and settings: what a rerun compares without reading audio) and
`input_key` (the content hash and settings: what the downstream stages build on).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import fsspec
import numpy as np
import pyarrow as pa
import soundfile as sf
import soxr

from s2s_models.audio import SAMPLE_RATE, FlacAudio
from tasks.asr.sources import (
    DEFAULT_LIMITS,
    ReadLimits,
    SourceItem,
    check_source,
    discover_inputs,
    stat_source,
)
from tasks.codecs import AUDIO_STRUCT, decode_flac
from tasks.stage import ROW_STATUS, StageSpec, fingerprint
from tasks.stage.plan import (
    SHARD_MAX_SOURCE_BYTES,
    StagePlan,
    chunked_by,
    done_rows,
    is_done,
)
from tasks.stage.shutdown import StopRequested, stop_requested
from tasks.stage.watchdog import Progress, Stalled, run_watched

HASH_BLOCK_BYTES = 1 << 20
DECODE_BLOCK_SECONDS = 30
# Downstream stages get recordings longer than this as FlacAudio (decoded slice by
# slice) instead of float32 arrays: 2 minutes is 7.7 MB of floats.
STREAM_ABOVE_SECONDS = 120.0


@dataclass(frozen=True)
class IngestOptions:
    sample_rate: int = SAMPLE_RATE  # Hz of the stored mono audio
    flac_subtype: str = "PCM_16"  # sample format of the stored FLAC
    resample_quality: str = "HQ"  # soxr quality: QQ, LQ, MQ, HQ, VHQ

    def verify(self) -> None:
        assert self.sample_rate > 0, "sample_rate must be positive"
        assert self.flac_subtype in ("PCM_16", "PCM_24"), "FLAC holds 16 or 24 bits"
        assert self.resample_quality in ("QQ", "LQ", "MQ", "HQ", "VHQ")


@dataclass(frozen=True)
class IngestParams:
    """What the ingest stage runs with: the options are part of every key, the
    limits are not (changing them redoes nothing by itself)."""

    options: IngestOptions = IngestOptions()
    limits: ReadLimits = DEFAULT_LIMITS


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


def keyed_item(item: SourceItem, req_key: str) -> dict:
    """A shard's input row: the item's fields and its request key."""
    return {**asdict(item), "request_key": req_key}


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


def compute_ingest(items: Iterable[dict], params: IngestParams) -> list[dict]:
    """Pure stage logic: one row per keyed item (`keyed_item`), failures included;
    when the run is stopping, the rows of the items done so far."""
    params.options.verify()
    params.limits.verify()
    rows = []
    for keyed in items:
        if stop_requested():
            break
        req_key = keyed["request_key"]
        item = SourceItem(**{k: v for k, v in keyed.items() if k != "request_key"})
        try:
            rows.append(ingest_one(item, req_key, params.options, params.limits))
        except StopRequested:
            break
    return rows


def ingest_audio(row: dict, stream_above_s: float = STREAM_ABOVE_SECONDS):
    """The audio of an ingest row (`num_samples`, `sampling_rate`, `audio`), as the
    downstream stages read it: a float32 array, or, for a recording longer than
    `stream_above_s`, a `FlacAudio` that they read slice by slice, so a long file
    never sits in memory as floats."""
    data = row["audio"]["bytes"]
    if row["num_samples"] > stream_above_s * row["sampling_rate"]:
        return FlacAudio(data)
    return decode_flac(data)[0]


AUDIO_INPUTS = ("num_samples", "sampling_rate", "audio")  # what ingest_audio reads


def plan_ingest(
    run_dir: str,
    inputs: list[str],
    params: IngestParams,
    shard_size: int,
    retry_failed: bool = False,
) -> StagePlan:
    """Discover the inputs and decide which items a run still has to ingest, in
    shards of at most `shard_size` files and SHARD_MAX_SOURCE_BYTES (a shard holds
    its encoded output until it is written). Manifests larger than
    `params.limits.max_bytes` are refused."""
    items = discover_inputs(inputs, params.limits.max_bytes)
    done = done_rows(run_dir, INGEST)
    wanted, todo, todo_bytes = {}, [], []
    for item in items:
        stat = stat_source(item.path)
        key = request_key(item, params.options, stat)
        wanted[item.utt_id] = key
        if not is_done(done.get(item.utt_id), key, retry_failed):
            todo.append(keyed_item(item, key))
            todo_bytes.append(float(stat[0] or 0))
    shards = chunked_by(todo, todo_bytes, shard_size, SHARD_MAX_SOURCE_BYTES)
    return StagePlan(shards, [len(s) for s in shards], wanted, len(todo))


INGEST = StageSpec(
    name="ingest",
    version=1,
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),  # sha256 of the source bytes + ingest settings
        ("request_key", pa.string()),  # path, size, mtime, reference, speaker
        ("source_path", pa.string()),  # as given (local path or fsspec URI)
        ("source_size", pa.int64()),
        ("source_mtime_ns", pa.int64()),
        ("source_sha256", pa.string()),
        ("source_format", pa.string()),  # e.g. 'WAV/PCM_16'
        ("source_sample_rate", pa.int32()),
        ("source_channels", pa.int32()),
        ("duration_s", pa.float64()),
        ("num_samples", pa.int64()),  # after resampling to `sampling_rate`
        ("sampling_rate", pa.int32()),
        ("audio", AUDIO_STRUCT),  # mono FLAC, 16-bit, `sampling_rate` Hz
        ("reference", pa.string()),
        ("speaker", pa.string()),
        *ROW_STATUS,
    ),
    compute=compute_ingest,
    plan=plan_ingest,
    key_column="request_key",
    unit="file",
    concurrency=2,  # decoding and resampling release the GIL
)
