"""Stage `features`: Whisper log-mel features and signal statistics per utterance.

The log-mel is stored unpadded (n_mels, n_frames) in float16 for review and for
downstream users (`LOG_MEL.read(row)` gives the array back). The ASR stage
recomputes its own float32 log-mel from the stored audio (on the GPU when there is
one): float16 features would cost token parity with the reference implementations,
and long-form chunking needs the waveform anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from s2s_models.audio import N_FFT, SAMPLE_RATE, log_mel_spectrogram_blockwise
from tasks.asr.ingest import AUDIO_INPUTS, INGEST, ingest_audio
from tasks.codecs import MelBlob
from tasks.stage import ROW_STATUS, StageSpec, error_text, failed_row, fingerprint

SILENCE_DBFS = -60.0
CLIP_LEVEL = 0.999
STATS_FRAME_SECONDS = 0.025
# (n_mels, n_frames) Whisper log-mel, row-major by mel bin
LOG_MEL = MelBlob("log_mel", ("n_mels", "n_frames"))


@dataclass(frozen=True)
class FeatureOptions:
    n_mels: int = 80  # 80 for Whisper tiny..large-v2, 128 for large-v3
    device: str = "cpu"  # where the STFT runs; 'cuda' when available

    def verify(self) -> None:
        assert self.n_mels in (80, 128), "Whisper log-mel has 80 or 128 bins"


def feature_key(ingest_key: str, options: FeatureOptions) -> str:
    # n_mels only: where the STFT runs does not change a row
    return fingerprint(FEATURES.name, ingest_key, options.n_mels)


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


def _features_row(row: dict, options: FeatureOptions) -> dict:
    audio = ingest_audio(row)
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
        "utt_id": row["utt_id"],
        "input_key": row["input_key"],
        **LOG_MEL.cells(mel.to(torch.float16).cpu().numpy()),
        **signal_stats(audio),
        "status": "ok",
        "error": None,
    }


def compute_features(rows: Iterable[dict], options: FeatureOptions) -> list[dict]:
    """Pure stage logic: one features row per ingest row (its audio columns), one
    recording decoded at a time: memory follows the output only."""
    options.verify()
    out = []
    for row in rows:
        try:
            out.append(_features_row(row, options))
        except Exception as exc:  # noqa: BLE001 - one bad item is a failed row
            keyed = {"utt_id": row["utt_id"], "input_key": row["input_key"]}
            out.append(failed_row(keyed, error_text(exc)))
    return out


FEATURES = StageSpec(
    name="features",
    version=2,
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("n_mels", pa.int32()),
        ("n_frames", pa.int32()),
        ("log_mel", pa.binary()),  # LOG_MEL: a float16 blob (tasks.codecs)
        ("peak", pa.float32()),  # max |sample|, full scale = 1.0
        ("rms_dbfs", pa.float32()),
        ("clipped_fraction", pa.float32()),  # samples with |x| >= 0.999
        ("silent_fraction", pa.float32()),  # 25 ms frames below -60 dBFS
        *ROW_STATUS,
    ),
    upstream=INGEST,
    key=feature_key,
    compute=compute_features,
    inputs=AUDIO_INPUTS,
)
