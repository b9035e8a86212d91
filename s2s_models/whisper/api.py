"""Public ASR entry point: ``load_asr(...).transcribe(audios, options)``.

This module holds what callers pass in and get back (:class:`TranscribeOptions`,
:class:`Transcription`, :class:`Segment`) and :class:`WhisperASR`, which checks the
input and hands it to one of the two long-form modes in
:mod:`s2s_models.whisper.longform`. (``longform`` builds these result types, so it
imports this module and is imported here only inside ``transcribe``.)

Example::

    asr = load_asr("tiny.en")
    [result] = asr.transcribe([audio_16k])
    print(result.text, [(s.start_s, s.end_s) for s in result.segments])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from s2s_models.audio import N_SAMPLES, SAMPLE_RATE, FlacAudio
from s2s_models.whisper import vad
from s2s_models.whisper.checkpoints import load_model
from s2s_models.whisper.decoding import DecodingOptions
from s2s_models.whisper.model import Whisper
from s2s_models.whisper.tokenizer import WhisperTokenizer

WINDOW_S = N_SAMPLES / SAMPLE_RATE  # 30.0 s: what the model sees at once


@dataclass(frozen=True)
class TranscribeOptions:
    """How to transcribe; every field is JSON-friendly (flat numbers and strings)."""

    language: str | None = None  # None: "en" for *.en models, detected otherwise
    task: str = "transcribe"  # or "translate" (to English; multilingual models)
    beam_size: int = 1  # 1: greedy; > 1: beam search at temperature 0
    batch_size: int = 8  # 30 s windows decoded together (across files); 0: auto
    # (from free GPU memory on CUDA, 8 on CPU; longform.auto_batch_size)
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback
    compression_ratio_threshold: float | None = 2.4  # above: retry hotter / drop
    logprob_threshold: float | None = -1.0  # avg log-prob below: retry hotter
    no_speech_threshold: float | None = 0.6  # with low log-prob: window is silence
    longform_mode: str = "vad"  # "vad" (batched over VAD chunks) or "sequential"
    without_timestamps: bool = False  # True: one segment per vad window and fewer
    # tokens, but tiny.en then stops early after pauses more often (bench/ dev set
    # WER 8.1% vs 5.9%, see bench/RESULTS.md); sequential mode always decodes
    # timestamps (it needs them to move through the audio)
    condition_on_previous_text: bool = True  # sequential: prompt with text so far
    initial_prompt: str | None = None  # context text (e.g. spellings of names):
    # given to every window in vad mode, to the first one in sequential mode
    vad_threshold: float = 0.5  # speech probability that starts speech
    vad_min_silence_s: float = 0.5  # pause that ends a speech region
    vad_speech_pad_s: float = 0.2  # context kept around each region
    max_chunk_s: float = 30.0  # longest vad-mode window
    max_gap_s: float = 5.0  # a longer pause starts a new window (silence skipped)
    loop_min_repeats: int = 4  # an n-gram repeated this often back to back ...
    loop_min_words: int = 10  # ... over at least this many words is a loop
    feature_padding: str = "mel"  # vad mode: "mel" pads the log-mel with zeros to
    # 30 s (faster-whisper); "audio" pads the audio (openai-whisper, HF)

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable
        object.__setattr__(self, "temperatures", tuple(self.temperatures))

    def verify(self) -> None:
        """Raise ValueError on inconsistent options."""
        if self.longform_mode not in ("vad", "sequential"):
            raise ValueError(
                f"longform_mode must be vad or sequential: {self.longform_mode!r}"
            )
        if self.feature_padding not in ("mel", "audio"):
            raise ValueError(
                f"feature_padding must be mel or audio: {self.feature_padding!r}"
            )
        if self.batch_size < 0 or self.beam_size < 1:
            raise ValueError("batch_size must be >= 0 (0: auto), beam_size >= 1")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError("temperatures must be a non-empty tuple of values >= 0")
        if not 1.0 < self.max_chunk_s <= WINDOW_S:
            raise ValueError(f"max_chunk_s must be in (1, {WINDOW_S}]")
        if self.loop_min_repeats < 2 or self.loop_min_words < 2:
            raise ValueError("loop_min_repeats and loop_min_words must be >= 2")
        self.vad_options().verify()
        self.decoding_options().verify()

    def vad_options(self) -> vad.VadOptions:
        return vad.VadOptions(
            threshold=self.vad_threshold,
            min_silence_s=self.vad_min_silence_s,
            speech_pad_s=self.vad_speech_pad_s,
        )

    def chunk_options(self) -> vad.ChunkOptions:
        return vad.ChunkOptions(max_chunk_s=self.max_chunk_s, max_gap_s=self.max_gap_s)

    def decoding_options(self, without_timestamps: bool | None = None):
        """Per-window options; ``without_timestamps`` overrides the field."""
        if without_timestamps is None:
            without_timestamps = self.without_timestamps
        return DecodingOptions(
            task=self.task,
            language=self.language,
            beam_size=self.beam_size,
            without_timestamps=without_timestamps,
            prompt=self.initial_prompt,
        )


@dataclass(frozen=True)
class Segment:
    """A stretch of text with absolute times; scores are those of its window."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float


@dataclass(frozen=True)
class Transcription:
    """One recording's transcript. Scores summarise the decoded windows."""

    text: str
    language: str
    segments: list[Segment] = field(default_factory=list)
    avg_logprob: float = math.nan  # token-weighted over windows; nan: none decoded
    no_speech_prob: float = math.nan  # mean over decoded windows
    compression_ratio: float = 0.0  # of the whole text
    temperature: float = 0.0  # highest temperature any window needed
    duration_s: float = 0.0


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
        from s2s_models.whisper import longform  # see the module docstring

        options = options or TranscribeOptions()
        options.verify()
        arrays = [_as_mono_16k(a, i) for i, a in enumerate(audios)]
        if options.longform_mode == "vad":
            return longform.transcribe_vad_batched(
                self.model, self.tokenizer, arrays, options, on_progress
            )
        results, done = [], 0.0
        for audio in arrays:
            audio = np.asarray(audio)  # this mode takes the mel of the whole file
            report = None
            if on_progress is not None:
                report = lambda seconds, base=done: on_progress(base + seconds)  # noqa: E731
            results.append(
                longform.transcribe_sequential(
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
