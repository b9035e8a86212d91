"""Stage `transcripts`: Whisper ASR over the ingested audio, shard by shard.

The model is loaded once per worker process (`get_asr` caches it) and reused by
every shard that process runs. A row's `input_key` covers the audio content, the
model weights and every decoding setting, so a rerun redoes exactly the rows whose
audio, model or settings changed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import torch

from s2s_models import TranscribeOptions
from s2s_models.audio import SAMPLE_RATE
from s2s_models.whisper.longform import auto_batch_size
from tasks.asr.ingest import AUDIO_INPUTS, INGEST, ingest_audio
from tasks.asr.models import get_asr, model_fingerprint
from tasks.stage import (
    ROW_STATUS,
    StageSpec,
    error_text,
    failed_row,
    fingerprint,
    run_isolating_failures,
)

log = logging.getLogger(__name__)

SEGMENT_STRUCT = pa.struct(
    [
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
        ("avg_logprob", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("compression_ratio", pa.float64()),
        ("temperature", pa.float64()),
        # null for plain text; else why speech here has no text or less of it:
        # no_speech, undecoded, loop_cut, repetitive, implausible_rate
        ("flag", pa.string()),
    ]
)

WORD_STRUCT = pa.struct(
    [
        ("word", pa.string()),  # as decoded, with its leading space and punctuation
        ("start_s", pa.float64()),  # seconds from the start of the recording
        ("end_s", pa.float64()),
        ("probability", pa.float64()),  # mean probability of its tokens
    ]
)


@dataclasses.dataclass(frozen=True)
class TranscriptsParams:
    """What the transcripts stage runs with, resolved once per run
    (`transcripts_params`): the model and the compute dtype are part of every key."""

    model: str  # checkpoint name or path, as given
    model_fingerprint: str  # content hash of its files
    device: str  # auto | cpu | cuda
    precision: str  # the compute dtype's name (float32, bfloat16, float16)
    options: TranscribeOptions


def transcripts_params(
    model: str, device: str, precision: str, options: TranscribeOptions
) -> TranscriptsParams:
    """Check `options` and fingerprint the model's files (without loading it)."""
    options.verify()
    return TranscriptsParams(
        model, model_fingerprint(model), device, precision, options
    )


def settings_json(options: TranscribeOptions, precision: str) -> str:
    """The decoding settings and the compute dtype (both change the output)."""
    settings = {**dataclasses.asdict(options), "precision": precision}
    return json.dumps(settings, sort_keys=True, default=str)


def transcript_key(ingest_key: str, params: TranscriptsParams) -> str:
    return fingerprint(
        TRANSCRIPTS.name,
        ingest_key,
        params.model_fingerprint,
        settings_json(params.options, params.precision),
    )


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


def _row(row: dict, result, decode_s: float, meta: dict) -> dict:
    return {
        **row,
        "text": result.text,
        "language": result.language,
        "segments": [dataclasses.asdict(s) for s in result.segments],
        "words": [dataclasses.asdict(w) for w in result.words],
        "avg_logprob": result.avg_logprob,
        "no_speech_prob": result.no_speech_prob,
        "compression_ratio": result.compression_ratio,
        "temperature": result.temperature,
        "decode_seconds": decode_s,
        "status": "ok",
        "error": None,
        **meta,
    }


def compute_transcripts(
    rows: Iterable[dict], params: TranscriptsParams, asr=None
) -> list[dict]:
    """Pure stage logic: transcribe a shard of ingest rows in batches across files
    (`asr`: the model, by default this process's `get_asr`).

    One bad item becomes one failed row and the rest of the shard is still
    transcribed (`run_isolating_failures`). `decode_seconds` shares the wall time
    among items by audio duration.
    """
    options = params.options
    if asr is None:
        asr = get_asr(params.model, params.device, params.precision)
    keyed, audios = [], []
    for row in rows:  # the FLAC bytes go as each recording is decoded
        keyed.append({"utt_id": row["utt_id"], "input_key": row["input_key"]})
        audios.append(ingest_audio(row))
    meta = {
        "model": params.model,
        "model_fingerprint": params.model_fingerprint,
        "device": str(asr.device),
        "beam_size": options.beam_size or 1,
        "language_setting": options.language or "auto",
        "decoding_settings": settings_json(options, params.precision),
    }
    durations = [a.size / SAMPLE_RATE for a in audios]
    started = time.perf_counter()
    results = run_isolating_failures(
        lambda batch: transcribe_with_backoff(asr, batch, options), audios
    )
    wall = time.perf_counter() - started
    total = sum(durations) or 1.0
    out = []
    for row, result, dur in zip(keyed, results, durations, strict=True):
        row["duration_s"] = dur
        if isinstance(result, Exception):
            out.append(failed_row({**row, **meta}, error_text(result)))
        else:
            out.append(_row(row, result, wall * dur / total, meta))
    return out


TRANSCRIPTS = StageSpec(
    name="transcripts",
    version=2,  # 2: segments.flag, words
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("text", pa.string()),
        ("language", pa.string()),
        ("segments", pa.list_(SEGMENT_STRUCT)),
        ("words", pa.list_(WORD_STRUCT)),  # empty unless word_timestamps
        ("avg_logprob", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("compression_ratio", pa.float64()),
        ("temperature", pa.float64()),
        ("duration_s", pa.float64()),
        ("decode_seconds", pa.float64()),  # shard wall time shared by audio duration
        ("model", pa.string()),
        ("model_fingerprint", pa.string()),
        ("device", pa.string()),
        ("beam_size", pa.int32()),
        ("language_setting", pa.string()),  # what was asked: a code or 'auto'
        ("decoding_settings", pa.string()),  # JSON of the full TranscribeOptions
        *ROW_STATUS,
    ),
    upstream=INGEST,
    key=transcript_key,
    compute=compute_transcripts,
    inputs=AUDIO_INPUTS,
    weigh_by_seconds=True,
)
