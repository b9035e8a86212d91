"""Features stage: log-mel rows and signal statistics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import torch

from s2s_models.audio import log_mel_spectrogram
from tasks.asr.features import (
    FEATURES,
    LOG_MEL,
    FeatureOptions,
    compute_features,
    signal_stats,
)
from tasks.codecs import MelBlob, encode_flac
from tests.conftest import SAMPLES


def _ingest_row(audio: np.ndarray) -> dict:
    """An ingest row as the features stage reads it."""
    return {
        "utt_id": "u",
        "input_key": "k",
        "num_samples": audio.size,
        "sampling_rate": 16000,
        "audio": {"bytes": encode_flac(audio, 16000, "PCM_24")},
    }


def test_features_row_matches_model_log_mel():
    audio, rate = sf.read(SAMPLES / "LJ002-0020.wav", dtype="float32")
    import soxr

    audio = soxr.resample(audio, rate, 16000).astype(np.float32)
    (row,) = compute_features([_ingest_row(audio)], FeatureOptions())
    table = pa.Table.from_pylist([row], FEATURES.schema)  # the stored layout
    mel = LOG_MEL.read(table.to_pylist()[0])
    assert mel.dtype == np.float16 and mel.shape == (80, audio.size // 160)
    ref = log_mel_spectrogram(torch.from_numpy(audio), n_mels=80).numpy()
    # float16 rounding, and the 24-bit FLAC of the stored audio
    assert np.max(np.abs(mel.astype(np.float32) - ref)) < 2e-3


def test_mel_blob_roundtrip():
    blob = MelBlob("m", ("n_rows", "n_cols"))
    mat = np.arange(6, dtype=np.float32).reshape(2, 3)
    cells = blob.cells(mat)
    assert cells["n_rows"] == 2 and cells["n_cols"] == 3
    assert len(cells["m"]) == 6 * 2  # float16: two bytes a value
    back = blob.read(cells)
    assert back.dtype == np.float16 and np.array_equal(back, mat)
    assert blob.read({"m": None, "n_rows": None, "n_cols": None}) is None


def test_signal_stats():
    sr = 16000
    clip = np.concatenate([np.zeros(sr, np.float32), np.ones(sr, np.float32)])
    stats = signal_stats(clip, sr)
    assert stats["peak"] == 1.0
    assert abs(stats["silent_fraction"] - 0.5) < 0.01
    assert abs(stats["clipped_fraction"] - 0.5) < 1e-6
    assert abs(stats["rms_dbfs"] - 20 * np.log10(np.sqrt(0.5))) < 1e-3


def test_signal_stats_block_by_block_equals_whole_signal():
    rng = np.random.default_rng(0)
    sr = 16000
    clip = rng.uniform(-0.5, 0.5, sr * 3 + 123).astype(np.float32)
    clip[sr : sr + 4000] = 0.0  # 10 silent frames
    clip[5] = 1.0  # one clipped sample
    whole = signal_stats(clip, sr, block_frames=10**6)
    for block_frames in (1, 7, 64):
        blocks = signal_stats(clip, sr, block_frames=block_frames)
        assert blocks == pytest.approx(whole, rel=1e-9, abs=1e-12)
    assert whole["silent_fraction"] == pytest.approx(10 / (clip.size // 400))
    assert whole["clipped_fraction"] == pytest.approx(1 / clip.size)


def test_one_sample_clip_gets_a_row():
    (row,) = compute_features(
        [_ingest_row(np.array([0.1], np.float32))], FeatureOptions()
    )
    assert row["status"] == "ok" and row["n_frames"] >= 1


def test_undecodable_audio_is_a_failed_row():
    bad = {**_ingest_row(np.zeros(10, np.float32)), "audio": {"bytes": b"not flac"}}
    (row,) = compute_features([bad], FeatureOptions())
    assert row["status"] == "failed" and row["utt_id"] == "u" and row["error"]
