"""Stage `transcripts`: Whisper ASR over the ingested audio, shard by shard.

The model is loaded once per worker process (`get_asr` caches it) and reused by
every shard that process runs. A row's `input_key` covers the audio content, the
model weights and every decoding setting, so a rerun redoes exactly the rows whose
audio, model or settings changed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from prefect import task
from prefect.cache_policies import NONE

from s2s_models import TranscribeOptions, load_asr
from s2s_models.audio import SAMPLE_RATE
from s2s_models.whisper.checkpoints import DTYPES, resolve_checkpoint
from s2s_models.whisper.longform import auto_batch_size
from tasks.ingest import read_ingest_audio
from tasks.schemas import TRANSCRIPTS
from tasks.stage import file_sha256, fingerprint, release_memory, write_part

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def get_asr(model: str, device: str, precision: str = "float32"):
    """The ASR model for this process, loaded on first use.
    `precision`: a dtype name ("float32", "bfloat16", "float16")."""
    return load_asr(model, device=device, dtype=DTYPES[precision])


def model_fingerprint(model: str) -> str:
    """Content hash of a checkpoint's files, without loading the model."""
    root = Path(resolve_checkpoint(model))
    files = (
        sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    )
    hashes = []
    for path in files:
        st = path.stat()
        hashes.append((path.name, file_sha256(str(path), st.st_size, st.st_mtime_ns)))
    return fingerprint(hashes)


def transcribe_options(settings: dict) -> TranscribeOptions:
    """Build (and check) the decoding options from JSON-friendly settings."""
    options = TranscribeOptions(**settings)
    options.verify()
    return options


def settings_json(options: TranscribeOptions, precision: str) -> str:
    """The decoding settings and the compute dtype (both change the output)."""
    settings = {**dataclasses.asdict(options), "precision": precision}
    return json.dumps(settings, sort_keys=True, default=str)


def transcript_key(
    ingest_key: str, model_fp: str, options: TranscribeOptions, precision: str
) -> str:
    return fingerprint(
        "transcripts", ingest_key, model_fp, settings_json(options, precision)
    )


def _row(utt_id, key, result, duration_s, decode_s, meta) -> dict:
    segments = [dataclasses.asdict(s) for s in result.segments]
    return {
        "utt_id": utt_id,
        "input_key": key,
        "text": result.text,
        "language": result.language,
        "segments": segments,
        "words": [dataclasses.asdict(w) for w in result.words],
        "avg_logprob": result.avg_logprob,
        "no_speech_prob": result.no_speech_prob,
        "compression_ratio": result.compression_ratio,
        "temperature": result.temperature,
        "duration_s": duration_s,
        "decode_seconds": decode_s,
        "status": "ok",
        "error": None,
        **meta,
    }


def _failed(utt_id, key, duration_s, error, meta) -> dict:
    return {
        "utt_id": utt_id,
        "input_key": key,
        "duration_s": duration_s,
        "status": "failed",
        "error": error,
        **meta,
    }


def transcribe_with_backoff(asr, audios: list[np.ndarray], options: TranscribeOptions):
    """`asr.transcribe`, halving the batch size on out-of-memory instead of failing.

    A GPU shared with other jobs, or a shard of unusually long windows, can run out
    of memory at a batch size that usually fits; the shard then goes on at half the
    batch (down to 1) rather than failing. Each 30 s window is decoded on its own,
    so the batch size does not change the transcripts.
    """
    while True:
        try:
            return asr.transcribe(audios, options)
        except torch.OutOfMemoryError:
            current = options.batch_size or auto_batch_size(
                asr.model, options.beam_size
            )  # 0 = auto: the size that was just tried
            if current <= 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            smaller = max(1, current // 2)
            log.warning(
                "out of memory at batch size %d; retrying the shard at %d",
                current,
                smaller,
            )
            options = dataclasses.replace(options, batch_size=smaller)


def compute_transcripts(
    asr,
    utt_ids: list[str],
    keys: list[str],
    audios: list[np.ndarray],
    options: TranscribeOptions,
    meta: dict,
) -> list[dict]:
    """Pure stage logic: transcribe a shard in batches across files.

    If a whole call fails, items are retried one by one so that one bad item
    becomes one failed row and the rest of the shard still gets transcribed.
    `decode_seconds` shares the wall time among items by audio duration.
    """
    durations = [a.size / SAMPLE_RATE for a in audios]
    started = time.perf_counter()
    try:
        results = transcribe_with_backoff(asr, audios, options)
        errors = [None] * len(audios)
    except Exception:  # noqa: BLE001 - isolate the failing item(s) below
        results, errors = [], []
        for audio in audios:
            try:
                results.append(asr.transcribe([audio], options)[0])
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - becomes a failed row
                results.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - started
    total = sum(durations) or 1.0
    rows = []
    for utt_id, key, result, error, dur in zip(
        utt_ids, keys, results, errors, durations, strict=True
    ):
        if error is not None:
            rows.append(_failed(utt_id, key, dur, error, meta))
        else:
            rows.append(_row(utt_id, key, result, dur, wall * dur / total, meta))
    return rows


@task(name="transcribe-shard", cache_policy=NONE, retries=1, retry_delay_seconds=2)
def transcribe_shard(
    run_dir: str,
    part_index: int,
    ingest_part: str,
    utt_ids: list[str],
    model: str,
    device: str,
    settings: dict,
    model_fp: str,
    precision: str = "float32",
) -> str:
    """Transcribe `utt_ids` of one ingest part; write one transcripts part.
    `precision`: the dtype name the flow resolved (part of every row's key)."""
    options = transcribe_options(settings)
    asr = get_asr(model, device, precision)
    found = read_ingest_audio(ingest_part, utt_ids)
    ids = [utt_id for utt_id, _, _ in found]
    keys = [transcript_key(key, model_fp, options, precision) for _, key, _ in found]
    audios = [audio for _, _, audio in found]
    meta = {
        "model": model,
        "model_fingerprint": model_fp,
        "device": str(asr.device),
        "beam_size": options.beam_size or 1,
        "language_setting": options.language or "auto",
        "decoding_settings": settings_json(options, precision),
    }
    rows = compute_transcripts(asr, ids, keys, audios, options, meta)
    out = pa.Table.from_pylist(rows, schema=TRANSCRIPTS)
    path = str(write_part(run_dir, "transcripts", part_index, out))
    release_memory()
    return path
