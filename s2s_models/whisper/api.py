"""Public ASR entry point: ``load_asr(...).transcribe(audios, options)``.

:class:`WhisperASR` checks the input and hands it to one of the two long-form modes:
:mod:`~s2s_models.whisper.longform` (VAD windows batched across recordings) or
:mod:`~s2s_models.whisper.sequential`. What callers pass in and get back
(:class:`TranscribeOptions`, :class:`Transcription`, :class:`Segment`, :class:`Word`)
lives in :mod:`~s2s_models.whisper.transcription`.

Example::

    asr = load_asr("tiny.en")
    [result] = asr.transcribe([audio_16k])
    print(result.text, [(s.start_s, s.end_s) for s in result.segments])
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from s2s_models.audio import SAMPLE_RATE, FlacAudio
from s2s_models.whisper.checkpoints import load_model
from s2s_models.whisper.longform import transcribe_vad_batched
from s2s_models.whisper.model import Whisper
from s2s_models.whisper.sequential import transcribe_sequential
from s2s_models.whisper.tokenizer import WhisperTokenizer
from s2s_models.whisper.transcription import TranscribeOptions, Transcription


class WhisperASR:
    """A loaded Whisper model ready to transcribe batches of recordings.

    Attributes
    ----------
    name : str
        What it was loaded from ("tiny.en", "base" or a path).
    sha256 : str
        Hash of the compute dtype and the loaded weights (names, shapes, float32
        values), for cache keys; ``fingerprint`` is its first 16 hex digits.
    device : torch.device
    """

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer, name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.sha256 = _weights_sha256(model)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def fingerprint(self) -> str:
        return self.sha256[:16]

    def transcribe(
        self,
        audios: Sequence[np.ndarray | FlacAudio],
        options: TranscribeOptions | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> list[Transcription]:
        """Transcribe recordings, batching 30 s windows across them.

        Parameters
        ----------
        audios
            Recordings as float32 16 kHz mono arrays ``(n_samples,)`` of any length
            (empty is allowed and gives empty text), or
            :class:`~s2s_models.audio.FlacAudio`: mode "vad" then decodes only the
            slices it works on, so an hour-long file never sits in memory whole.
        options
            :class:`TranscribeOptions`; defaults suit batch use on CPU.
        on_progress
            Called now and then with the seconds of audio done so far (summed over
            all recordings; reaches their total duration at the end).

        Returns
        -------
        list[Transcription]
            One per recording, in input order.
        """
        options = options or TranscribeOptions()
        options.verify()
        arrays = [_as_mono_16k(a, i) for i, a in enumerate(audios)]
        if options.longform_mode == "vad":
            return transcribe_vad_batched(
                self.model, self.tokenizer, arrays, options, on_progress
            )
        results, done = [], 0.0
        for audio in arrays:
            audio = np.asarray(audio)  # this mode takes the mel of the whole file
            report = None
            if on_progress is not None:
                report = lambda seconds, base=done: on_progress(base + seconds)  # noqa: E731
            results.append(
                transcribe_sequential(
                    self.model, self.tokenizer, audio, options, report
                )
            )
            done += len(audio) / SAMPLE_RATE
            if on_progress is not None:
                on_progress(done)
        return results


def _as_mono_16k(audio: np.ndarray | FlacAudio, index: int) -> np.ndarray | FlacAudio:
    if isinstance(audio, FlacAudio):  # decoded window by window (mode "vad")
        if audio.sample_rate != SAMPLE_RATE:
            raise ValueError(f"audio {index}: {audio.sample_rate} Hz, not 16 kHz")
        return audio
    array = np.asarray(audio)
    if array.ndim != 1:
        raise ValueError(
            f"audio {index}: expected mono (n_samples,), got shape {array.shape}"
        )
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"audio {index}: contains NaN or infinite samples")
    return np.ascontiguousarray(array)


def _weights_sha256(model: Whisper) -> str:
    # the compute dtype changes the output, so it is part of the identity
    digest = hashlib.sha256(f"dtype={model.dtype};".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_asr(
    name: str = "tiny.en", device: str = "auto", dtype: torch.dtype | None = None
) -> WhisperASR:
    """Load a Whisper model for transcription.

    Parameters
    ----------
    name
        "tiny.en" (bundled, default), "base" (bundled), or a checkpoint path that
        :func:`s2s_models.whisper.load_model` accepts.
    device
        "auto" (CUDA when available), "cpu", "cuda", ...
    dtype
        Default float32 on CPU, float16 on CUDA.
    """
    model, tokenizer = load_model(name, device=device, dtype=dtype)
    return WhisperASR(model, tokenizer, str(name))
