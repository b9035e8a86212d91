"""Stage `features`: Whisper log-mel features and signal statistics per utterance.

The log-mel is stored unpadded (n_mels, n_frames) in float16 for review and for
downstream users. The ASR stage recomputes its own float32 log-mel from the stored
audio (on the GPU when there is one): float16 features would cost token parity with
the reference implementations, and long-form chunking needs the waveform anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import torch
from prefect import task
from prefect.cache_policies import NONE

from s2s_models.audio import N_FFT, SAMPLE_RATE, log_mel_spectrogram_blockwise
from tasks.ingest import iter_ingest_audio
from tasks.schemas import FEATURES
from tasks.stage import fingerprint, release_memory, write_part

SILENCE_DBFS = -60.0
CLIP_LEVEL = 0.999
STATS_FRAME_SECONDS = 0.025


@dataclass(frozen=True)
class FeatureOptions:
    n_mels: int = 80  # 80 for Whisper tiny..large-v2, 128 for large-v3
    device: str = "cpu"  # where the STFT runs; 'cuda' when available

    def verify(self) -> None:
        assert self.n_mels in (80, 128), "Whisper log-mel has 80 or 128 bins"


def feature_key(ingest_key: str, options: FeatureOptions) -> str:
    return fingerprint("features", ingest_key, options.n_mels)


def signal_stats(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, block_frames: int = 2500
) -> dict:
    """Peak, RMS level, clipped and silent fractions of a mono float signal.

    Works through the signal `block_frames` 25 ms frames at a time, so an hour of
    audio needs no float64 copy of itself.
    """
    if audio.size == 0:
        return {
            "peak": 0.0,
            "rms_dbfs": -np.inf,
            "clipped_fraction": 0.0,
            "silent_fraction": 1.0,
        }
    frame = max(1, int(STATS_FRAME_SECONDS * sample_rate))
    n_frames = audio.size // frame
    peak, sum_sq, clipped, silent_frames = 0.0, 0.0, 0, 0
    step = frame * block_frames
    for start in range(0, audio.size, step):
        block = audio[start : start + step].astype(np.float64)
        peak = max(peak, float(np.abs(block).max()))
        sum_sq += float(np.dot(block, block))
        clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
        whole = block.size // frame  # the signal's last partial frame is not counted
        if whole:
            frames = block[: whole * frame].reshape(whole, frame)
            frame_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
            silent_frames += int(np.count_nonzero(frame_db < SILENCE_DBFS))
    rms = float(np.sqrt(sum_sq / audio.size))
    if n_frames:
        silent = silent_frames / n_frames
    else:
        silent = float(20 * np.log10(rms + 1e-10) < SILENCE_DBFS)
    return {
        "peak": peak,
        "rms_dbfs": float(20 * np.log10(rms + 1e-10)),
        "clipped_fraction": clipped / audio.size,
        "silent_fraction": silent,
    }


def _features_row(
    utt_id: str, key: str, audio: np.ndarray, options: FeatureOptions
) -> dict:
    # The centred STFT reflects N_FFT // 2 samples at each end, so clips shorter
    # than that (a few ms) are zero-padded to one window first.
    padded = audio
    if len(audio) < N_FFT:
        padded = np.pad(np.asarray(audio), (0, N_FFT - len(audio)))
    with torch.inference_mode():  # block by block: an hour-long file stays cheap
        mel = log_mel_spectrogram_blockwise(
            padded, n_mels=options.n_mels, device=options.device
        )  # (n_mels, n_frames)
    return {
        "utt_id": utt_id,
        "input_key": key,
        "n_mels": int(mel.shape[0]),
        "n_frames": int(mel.shape[1]),
        "log_mel": mel.to(torch.float16).cpu().numpy(),
        **signal_stats(audio),
        "status": "ok",
        "error": None,
    }


def compute_features(
    utt_ids: list[str],
    keys: list[str],
    audios: list[np.ndarray],
    options: FeatureOptions,
) -> list[dict]:
    """Pure stage logic: one features row per utterance (16 kHz mono float input)."""
    options.verify()
    rows = []
    for utt_id, key, audio in zip(utt_ids, keys, audios, strict=True):
        try:
            rows.append(_features_row(utt_id, key, audio, options))
        except Exception as exc:  # noqa: BLE001 - one bad item is a failed row
            rows.append(
                {
                    "utt_id": utt_id,
                    "input_key": key,
                    "log_mel": None,
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
    return rows


@task(name="features-shard", cache_policy=NONE, retries=1, retry_delay_seconds=2)
def features_shard(
    run_dir: str, part_index: int, ingest_part: str, utt_ids: list[str], options: dict
) -> str:
    """Compute features for `utt_ids` of one ingest part; write one features part."""
    opts = FeatureOptions(**options)
    rows = []  # one recording decoded at a time: memory follows the output only
    for utt_id, key, audio in iter_ingest_audio(ingest_part, utt_ids):
        (row,) = compute_features([utt_id], [feature_key(key, opts)], [audio], opts)
        if row["log_mel"] is not None:  # the stored layout: see tasks.schemas
            row["log_mel"] = row["log_mel"].astype("<f2", copy=False).tobytes()
        rows.append(row)
    out = pa.Table.from_pylist(rows, schema=FEATURES)
    path = str(write_part(run_dir, "features", part_index, out))
    release_memory()
    return path


def log_mel_array(row: dict) -> np.ndarray | None:
    """The (n_mels, n_frames) float16 log-mel of a `features` row (a dict, e.g. from
    `pd.read_parquet(RUN_DIR/features).iloc[i]` or `table.to_pylist()`)."""
    if row["log_mel"] is None:
        return None
    mel = np.frombuffer(row["log_mel"], dtype="<f2")
    return mel.reshape(int(row["n_mels"]), int(row["n_frames"]))


def options_dict(options: FeatureOptions) -> dict:
    return asdict(options)
