"""What long-form transcription takes and gives: options and result types, plus the
rules both long-form modes share (silence, hallucination loops, assembling a result).

:class:`TranscribeOptions` goes in; each recording comes back as a
:class:`Transcription` of :class:`Segment` s (and :class:`Word` s with
``word_timestamps``), all with times in seconds from the start of the recording.
The modes themselves are :mod:`~s2s_models.whisper.longform` (VAD windows batched
across recordings, the default) and :mod:`~s2s_models.whisper.sequential`
(openai-whisper's seek loop).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from s2s_models.audio import N_SAMPLES, SAMPLE_RATE
from s2s_models.whisper import vad
from s2s_models.whisper.decoding import (
    DecodingOptions,
    DecodingResult,
    compression_ratio,
)

WINDOW_S = N_SAMPLES / SAMPLE_RATE  # 30.0 s: what the model sees at once

# Segment.flag values: why a stretch of speech has no text, or less than it had.
NO_SPEECH = "no_speech"  # window judged silence by Whisper, though the VAD heard speech
UNDECODED = "undecoded"  # speech left after the last re-decoding of a window
LOOP_CUT = "loop_cut"  # a repeated n-gram (hallucination loop) was cut to one copy
REPETITIVE = "repetitive"  # text dropped: still too repetitive after the loop cut
IMPLAUSIBLE_RATE = "implausible_rate"  # more words than the speech can hold, kept
SEGMENT_FLAGS = (NO_SPEECH, UNDECODED, LOOP_CUT, REPETITIVE, IMPLAUSIBLE_RATE)


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
    longform_mode: str = "vad"  # "vad" (batched over VAD windows) or "sequential"
    without_timestamps: bool = False  # True: vad mode decodes text only (one
    # segment per window, no re-decoding of a window that stops early)
    condition_on_previous_text: bool | None = None  # prompt each window with the
    # text before it; None: the mode's default, on in sequential mode (openai's),
    # off in vad mode (measured worse there; vad mode then decodes a file's windows
    # in order)
    initial_prompt: str | None = None  # context text (e.g. spellings of names)
    # for the first window of each file (every window when not conditioning)
    word_timestamps: bool = False  # word start/end/probability by cross-attention DTW
    vad_threshold: float = 0.35  # speech probability that starts speech
    vad_min_silence_s: float = 0.5  # pause that ends a speech region
    vad_speech_pad_s: float = 0.4  # context kept around each region
    weak_speech_threshold: float = 0.1  # a pause with frames this likely to be
    # speech (whisper, distant talk) is decoded, not cut out
    min_silence_cut_s: float = 1.0  # vad mode: a pause of confident silence at
    # least this long is cut out of the audio a window holds
    rescore_silences: bool = True  # vad mode: score each confident silence
    # again on its own (fresh VAD state), so quiet speech after loud speech, which
    # the VAD's carried state scores low, is decoded instead of cut out
    max_chunk_s: float = 30.0  # longest vad-mode window (of audio kept)
    remainder_speech_s: float = 1.0  # vad mode: this much VAD speech after a
    # window's last timestamp is decoded again from there
    max_words_per_s: float = 6.0  # more words per second of window audio than
    # this is invented text: the window is retried hotter and flagged
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
        if not 0.0 < self.weak_speech_threshold <= self.vad_threshold:
            raise ValueError("weak_speech_threshold must be in (0, vad_threshold]")
        if self.min_silence_cut_s < 0 or self.remainder_speech_s <= 0:
            raise ValueError("min_silence_cut_s must be >= 0, remainder_speech_s > 0")
        if self.max_words_per_s <= 0:
            raise ValueError("max_words_per_s must be > 0")
        self.vad_options().verify()
        self.decoding_options().verify()

    @property
    def conditioning(self) -> bool:
        """Whether windows are prompted with the text before them."""
        if self.condition_on_previous_text is None:
            return self.longform_mode == "sequential"
        return self.condition_on_previous_text

    def vad_options(self, threshold: float | None = None) -> vad.VadOptions:
        """Speech regions at ``vad_threshold`` (or the ``threshold`` given)."""
        return vad.VadOptions(
            threshold=self.vad_threshold if threshold is None else threshold,
            min_silence_s=self.vad_min_silence_s,
            speech_pad_s=self.vad_speech_pad_s,
        )

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
class Word:
    """One word with absolute times and the mean probability of its tokens."""

    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Segment:
    """A stretch of text with absolute times; scores are those of its window.

    ``flag`` says what happened to the speech here when it is not plain text (one
    of ``SEGMENT_FLAGS``); a flagged segment may have empty text (speech the
    transcript leaves out, kept so a reviewer sees where).
    """

    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    flag: str | None = None


@dataclass(frozen=True)
class Transcription:
    """One recording's transcript. Scores summarise the decoded windows."""

    text: str
    language: str
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)  # with word_timestamps
    avg_logprob: float = math.nan  # token-weighted over windows; nan: none decoded
    no_speech_prob: float = math.nan  # mean over decoded windows
    compression_ratio: float = 0.0  # of the whole text
    temperature: float = 0.0  # highest temperature any window needed
    duration_s: float = 0.0


# ---------------------------------------------------------------------------
# Hallucination loops
# ---------------------------------------------------------------------------
def _key(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def find_loop(
    words: list[str], min_repeats: int = 4, min_words: int = 10, max_n: int = 12
) -> tuple[int, int, int] | None:
    """Longest run of one n-gram repeated back to back, if it counts as a loop.

    Words are compared case- and punctuation-insensitively. A run counts when the
    n-gram occurs at least ``min_repeats`` times in a row and the run spans at least
    ``min_words`` words (so "words words words words" in real speech is not one).

    Returns
    -------
    (start, n, repeats) or None
        The run is ``words[start : start + n * repeats]``.
    """
    keys = [_key(w) for w in words]
    best: tuple[int, int, int] | None = None
    for n in range(1, max_n + 1):
        for start in range(len(keys) - n * min_repeats + 1):
            gram = keys[start : start + n]
            repeats = 1
            while keys[start + repeats * n : start + (repeats + 1) * n] == gram:
                repeats += 1
            span = n * repeats
            if repeats >= min_repeats and span >= min_words:
                if best is None or span > best[1] * best[2]:
                    best = (start, n, repeats)
    return best


def clean_segment_text(
    text: str, ratio_threshold: float | None, min_repeats: int, min_words: int
) -> tuple[str, str | None]:
    """Cut hallucination loops out of ``text``; drop it if still too repetitive.

    Returns
    -------
    (text, flag)
        ``flag`` is ``LOOP_CUT`` when a loop was cut, ``REPETITIVE`` when the text
        was dropped, else None.
    """
    words = text.split()
    flag = None
    while (loop := find_loop(words, min_repeats, min_words)) is not None:
        start, n, repeats = loop
        words = words[: start + n] + words[start + n * repeats :]
        flag = LOOP_CUT
    cleaned = " ".join(words)
    if ratio_threshold is not None and compression_ratio(cleaned) > ratio_threshold:
        return "", REPETITIVE
    if flag or cleaned != text.strip():
        return (" " + cleaned if cleaned else ""), flag
    return text, None


def clean_segments(
    segments: list[Segment], options: TranscribeOptions
) -> list[Segment]:
    """:func:`clean_segment_text` on every segment. Segments left without text are
    dropped unless they carry a flag (a reviewer should see what was cut)."""
    kept = []
    for seg in segments:
        text, flag = clean_segment_text(
            seg.text,
            options.compression_ratio_threshold,
            options.loop_min_repeats,
            options.loop_min_words,
        )
        flag = seg.flag or flag
        if text.strip() or flag:
            kept.append(replace(seg, text=text, flag=flag))
    return kept


def is_silence(result: DecodingResult, options: TranscribeOptions) -> bool:
    """openai-whisper's rule: likely no speech, and the text is not confident.
    Without a log-prob threshold nothing is judged silence (never on the no-speech
    probability alone)."""
    if options.no_speech_threshold is None or options.logprob_threshold is None:
        return False
    return (
        result.no_speech_prob > options.no_speech_threshold
        and result.avg_logprob < options.logprob_threshold
    )


def assemble(
    segments: list[Segment],
    windows: list[DecodingResult],
    duration_s: float,
    default_language: str,
    words: list[Word] | None = None,
) -> Transcription:
    """Join cleaned segments and summarise the windows they came from."""
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    if not windows:
        return Transcription(
            text, default_language, segments, words or [], duration_s=duration_s
        )
    n_tokens = [len(w.tokens) + 1 for w in windows]  # +1: the end-of-text token
    languages: dict[str, int] = {}
    for w, n in zip(windows, n_tokens, strict=True):
        languages[w.language] = languages.get(w.language, 0) + n
    return Transcription(
        text=text,
        language=max(languages, key=languages.get),
        segments=segments,
        words=words or [],
        avg_logprob=float(
            np.average([w.avg_logprob for w in windows], weights=n_tokens)
        ),
        no_speech_prob=float(np.mean([w.no_speech_prob for w in windows])),
        compression_ratio=compression_ratio(text),
        temperature=max(w.temperature for w in windows),
        duration_s=duration_s,
    )
