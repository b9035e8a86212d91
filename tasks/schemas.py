"""Arrow schemas of every stage, declared once.

Each schema carries its stage name and a schema version in its metadata. Writing and
reading go through `tasks.stage`, which checks both, so a part written by an older
layout is never read as if it were current. Bump a stage's version whenever a column
is added, removed or changes meaning.

Every row is keyed by `utt_id`. `input_key` fingerprints everything the row was
computed from (source content hash, upstream keys, model and settings): a rerun skips
a row only when its `input_key` is unchanged. `status` is 'ok' or 'failed'; a failed
row carries a human-readable `error` and nulls elsewhere.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION_KEY = b"s2s.schema_version"
STAGE_KEY = b"s2s.stage"

# The layout the Hugging Face `datasets` Audio feature reads from Parquet.
AUDIO_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

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

_ROW_STATUS = [
    ("status", pa.string()),  # 'ok' | 'failed'
    ("error", pa.string()),  # null when ok
]


def _schema(
    stage: str, version: int, fields: list[tuple[str, pa.DataType]]
) -> pa.Schema:
    names = [name for name, _ in fields]
    assert len(names) == len(set(names)), f"duplicate column in {stage}"
    metadata = {SCHEMA_VERSION_KEY: str(version).encode(), STAGE_KEY: stage.encode()}
    return pa.schema(fields, metadata=metadata)


INGEST = _schema(
    "ingest",
    1,
    [
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
        *_ROW_STATUS,
    ],
)

FEATURES = _schema(
    "features",
    2,
    [
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("n_mels", pa.int32()),
        ("n_frames", pa.int32()),
        # (n_mels, n_frames) Whisper log-mel, unpadded: float16 little-endian bytes,
        # row-major by mel bin (tasks.features.log_mel_array gives the array). One
        # blob per row: Arrow's Parquet writer needs about 11x a nested
        # list<list<float16>> row's size to write it (660 MB for an hour of audio),
        # and about 3x for a blob.
        ("log_mel", pa.binary()),
        ("peak", pa.float32()),  # max |sample|, full scale = 1.0
        ("rms_dbfs", pa.float32()),
        ("clipped_fraction", pa.float32()),  # samples with |x| >= 0.999
        ("silent_fraction", pa.float32()),  # 25 ms frames below -60 dBFS
        *_ROW_STATUS,
    ],
)

TRANSCRIPTS = _schema(
    "transcripts",
    2,
    [
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
        *_ROW_STATUS,
    ],
)

EVALUATION = _schema(
    "evaluation",
    1,
    [
        ("utt_id", pa.string()),
        ("has_reference", pa.bool_()),
        ("reference_norm", pa.string()),
        ("hypothesis_norm", pa.string()),
        ("wer", pa.float64()),
        ("cer", pa.float64()),
        ("ref_words", pa.int64()),
        ("hits", pa.int64()),
        ("substitutions", pa.int64()),
        ("deletions", pa.int64()),
        ("insertions", pa.int64()),
        ("ref_chars", pa.int64()),
        ("char_errors", pa.int64()),
        ("duration_s", pa.float64()),
        ("speaker", pa.string()),
        ("source_folder", pa.string()),
        ("duration_bucket", pa.string()),
        ("chars_per_s", pa.float64()),
        ("flags", pa.list_(pa.string())),
        ("flagged", pa.bool_()),
    ],
)

# ---------------------------------------------------------------- TTS dataset runs
# tts_requests -> mels -> audio -> tts_evaluation (flows/regenerate_tts_dataset.py).

TTS_REQUESTS = _schema(
    "tts_requests",
    1,
    [
        ("utt_id", pa.string()),
        ("input_key", pa.string()),  # text, speaker, source and text settings
        ("source", pa.string()),  # input file (and line or row) the text came from
        ("text", pa.string()),  # as given (null when it could not be decoded)
        ("normalized_text", pa.string()),  # what the engine is asked to say
        ("n_chars", pa.int32()),  # characters of normalized_text
        ("n_tokens", pa.int32()),  # SpeechT5 character tokens, </s> included
        ("n_chunks", pa.int32()),  # sentence chunks it is synthesized in
        ("unknown_chars", pa.list_(pa.string())),  # removed: not in the vocabulary
        ("speaker", pa.string()),
        *_ROW_STATUS,
    ],
)

MELS = _schema(
    "mels",
    2,
    [
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("text", pa.string()),
        ("normalized_text", pa.string()),
        ("speaker", pa.string()),
        ("engine", pa.string()),  # speecht5 | piper | espeak
        ("n_mels", pa.int32()),
        ("n_frames", pa.int32()),
        # (n_frames, n_mels) SpeechT5 log10 mel, frame-major (as SpeechT5 predicts
        # and trains on it): 16 kHz, hop 256, window 1024, 80 Slaney bins 80-7600 Hz.
        ("log_mel", pa.list_(pa.list_(pa.float16()))),
        ("stopped", pa.bool_()),  # the stop token ended every chunk
        ("hit_max_length", pa.bool_()),  # some chunk was cut at the step limit
        # some chunk stopped far shorter than its phonemes need, on every seed tried
        ("cut_short", pa.bool_()),
        # teacher engines: their own audio, resampled to 16 kHz mono FLAC; null for
        # speecht5 (the audio stage vocodes the mel)
        ("engine_audio", AUDIO_STRUCT),
        ("synth_seconds", pa.float64()),  # compute time, batch time shared by frames
        *_ROW_STATUS,
    ],
)

TTS_AUDIO = _schema(
    "audio",
    1,
    [
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("text", pa.string()),
        ("normalized_text", pa.string()),
        ("speaker", pa.string()),
        ("audio", AUDIO_STRUCT),  # mono FLAC, 16-bit, `sampling_rate` Hz
        ("sampling_rate", pa.int32()),
        ("duration_s", pa.float64()),
        ("vocoder", pa.string()),  # hifigan | griffinlim | engine (teacher's audio)
        ("vocode_seconds", pa.float64()),
        *_ROW_STATUS,
    ],
)

TTS_EVALUATION = _schema(
    "tts_evaluation",
    2,
    [
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("text", pa.string()),
        ("hypothesis", pa.string()),  # ASR transcript of the synthesized audio
        ("reference_norm", pa.string()),
        ("hypothesis_norm", pa.string()),
        ("wer", pa.float64()),
        ("cer", pa.float64()),
        ("ref_words", pa.int64()),
        ("word_errors", pa.int64()),
        ("ref_chars", pa.int64()),
        ("char_errors", pa.int64()),
        ("duration_s", pa.float64()),
        ("chars_per_s", pa.float64()),  # characters of text per second of audio
        ("words_per_min", pa.float64()),
        ("n_phonemes", pa.int32()),  # of normalized_text, by our English front end
        ("seconds_per_phoneme", pa.float64()),
        ("duration_flag", pa.string()),  # too_short | too_long | null (plausible)
        ("dnsmos_sig", pa.float64()),  # null when DNSMOS was not run
        ("dnsmos_bak", pa.float64()),
        ("dnsmos_ovrl", pa.float64()),
        ("dnsmos_p808", pa.float64()),
        ("asr_model", pa.string()),
        *_ROW_STATUS,
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    "ingest": INGEST,
    "features": FEATURES,
    "transcripts": TRANSCRIPTS,
    "evaluation": EVALUATION,
    "tts_requests": TTS_REQUESTS,
    "mels": MELS,
    "audio": TTS_AUDIO,
    "tts_evaluation": TTS_EVALUATION,
}


def float16_matrix_column(mats: list) -> pa.Array:
    """list<list<float16>> from 2-D numpy arrays (outer list over axis 0), None kept
    as null; built from offsets, without a Python loop over values."""
    import numpy as np

    outer, inner, values = [0], [0], []
    for mat in mats:
        if mat is None:
            outer.append(outer[-1])
            continue
        n_rows, n_cols = mat.shape
        base = inner[-1]
        inner.extend(base + n_cols * (k + 1) for k in range(n_rows))
        outer.append(outer[-1] + n_rows)
        values.append(np.ascontiguousarray(mat, dtype=np.float16).reshape(-1))
    flat = pa.array(np.concatenate(values) if values else np.zeros(0, np.float16))
    rows = pa.ListArray.from_arrays(pa.array(inner, pa.int32()), flat)
    mask = pa.array([m is None for m in mats])
    return pa.ListArray.from_arrays(pa.array(outer, pa.int32()), rows, mask=mask)


def schema_version(schema: pa.Schema) -> int:
    return int((schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"0"))
