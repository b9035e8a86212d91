"""How audio and mel matrices are stored in Parquet cells, for ASR and TTS alike.

* Audio: mono 16-bit FLAC bytes in the struct that the Hugging Face `datasets`
  Audio feature reads (`struct<bytes: binary, path: string>`), so users can load a
  stage's folder directly.
* Mels: one float16 little-endian blob per row, C order, with the matrix's shape
  in two int32 columns. A nested `list<list<float16>>` column costs the Parquet
  writer about 11x a row's size to write (660 MB for an hour of audio); a blob
  about 3x. `MelBlob` says which columns hold a stage's blob and its shape.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import soundfile as sf

AUDIO_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def encode_flac(audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """(n_samples,) float audio in [-1, 1] (clipped) -> FLAC bytes."""
    buf = io.BytesIO()
    sf.write(
        buf, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype=subtype
    )
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """Inverse of `encode_flac`: (float32 mono samples, sample rate)."""
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return audio, rate


def audio_cell(audio: np.ndarray, sample_rate: int, utt_id: str) -> dict:
    """An `AUDIO_STRUCT` value; `path` names the file `datasets` decodes it as."""
    return {"bytes": encode_flac(audio, sample_rate), "path": f"{utt_id}.flac"}


@dataclass(frozen=True)
class MelBlob:
    """Where a stage keeps a float16 matrix: its blob column and its shape columns,
    named in memory order (a row-major (n_mels, n_frames) matrix has shape
    ("n_mels", "n_frames"))."""

    column: str
    shape: tuple[str, str]

    @property
    def columns(self) -> tuple[str, str, str]:
        """The blob column and its shape columns (what a reader must load)."""
        return (self.column, *self.shape)

    def cells(self, mat: np.ndarray) -> dict:
        """The row cells of `mat`: its blob and its two dimensions."""
        blob = np.ascontiguousarray(mat, dtype="<f2").tobytes()
        return {
            self.column: blob,
            self.shape[0]: mat.shape[0],
            self.shape[1]: mat.shape[1],
        }

    def read(self, row: dict) -> np.ndarray | None:
        """The float16 matrix of `row` (a dict holding the blob and shape columns,
        e.g. from `table.to_pylist()` or a pandas row); None for a failed row."""
        if row[self.column] is None:
            return None
        mat = np.frombuffer(row[self.column], dtype="<f2")
        return mat.reshape(int(row[self.shape[0]]), int(row[self.shape[1]]))
