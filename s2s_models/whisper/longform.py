"""VAD mode: transcribe recordings of any length through windows batched across
recordings (the default long-form mode; :mod:`~s2s_models.whisper.sequential` is
openai-whisper's seek loop).

1. **Plan** (:mod:`~s2s_models.whisper.windows`): Silero VAD probabilities of each
   recording, each would-be-cut silence scored again on its own (quiet speech after
   loud speech, which the VAD's carried state misses); confident silences of
   ``min_silence_cut_s`` or more are cut out and the rest is packed into windows of
   at most 30 s. Loader threads plan several recordings at once and cut the next
   batch's audio while the model decodes.
2. **Decode** windows of all recordings in batches, with timestamps, with
   temperature fallback. Besides Whisper's own checks (compression ratio, average
   log-prob), a window is retried hotter when its text cannot be the speech in it:
   empty although the VAD hears ``remainder_speech_s`` of speech, or more than
   ``max_words_per_s`` words per second of audio (invented text).
3. **Seek inside a window**: when a window's decoding stops before its speech ends
   (an early end-of-text, or a last timestamp well before the end), the rest of the
   window from its last complete segment is queued as a new window and decoded with
   later batches, up to ``MAX_ATTEMPTS`` times; so is speech its timestamps jump
   over (between segments or before the first). The end of a recording is never
   dropped silently: speech still left is a segment flagged ``undecoded``.
4. **Silence**: a window is skipped only by openai-whisper's rule (no-speech
   probability high *and* text improbable); when the VAD heard speech there, the
   skip is kept as a segment flagged ``no_speech``.
5. **Assemble** each recording's segments in time order (absolute times), cut
   hallucination loops (flagged ``loop_cut``), add word timings when asked
   (:mod:`~s2s_models.whisper.alignment`).

With ``condition_on_previous_text`` a recording's windows are decoded in order, each
prompted with the text before it (windows of different recordings still share
batches).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from s2s_models.audio import (
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    log_mel_spectrogram,
    pad_or_trim,
)
from s2s_models.whisper import vad
from s2s_models.whisper.alignment import align_words, words_in_recording
from s2s_models.whisper.decoding import DecodingResult, decode_with_fallback
from s2s_models.whisper.model import Whisper, WhisperDims
from s2s_models.whisper.tokenizer import WhisperTokenizer
from s2s_models.whisper.transcription import (
    IMPLAUSIBLE_RATE,
    NO_SPEECH,
    UNDECODED,
    Segment,
    TranscribeOptions,
    Transcription,
    assemble,
    clean_segments,
    is_silence,
)
from s2s_models.whisper.windows import (
    Window,
    plan_windows,
    rescore_silences,
    speech_seconds,
)

ProgressFn = Callable[[float], None]
MAX_PROMPT = 223  # prompt tokens kept: half the decoder context, less <|startofprev|>
MAX_ATTEMPTS = 6  # re-decodings of the rest of one window
MIN_ADVANCE_S = 1.0  # a re-decoding starts at least this far into its window


def window_mels(
    model: Whisper, pieces: list[np.ndarray], padding: str = "mel"
) -> torch.Tensor:
    """Log-mel of audio pieces (each <= 30 s) as 30 s windows: (n, n_mels, 3000).

    padding="mel" (default): the mel of each piece (plus one hop of zeros) padded
    with zero columns, as faster-whisper does: token parity with it. "audio": the
    piece zero-padded to 30 s first, as openai-whisper and Hugging Face do. See the
    notes at the top of s2s_models/audio.py.
    """
    if padding == "audio":
        batch = np.zeros((len(pieces), N_SAMPLES), dtype=np.float32)
        for i, piece in enumerate(pieces):
            batch[i, : min(len(piece), N_SAMPLES)] = piece[:N_SAMPLES]
        mel = log_mel_spectrogram(
            torch.from_numpy(batch), model.dims.n_mels, device=model.device
        )
        return pad_or_trim(mel, N_FRAMES)
    # the centred STFT reflects at the edges: a piece shorter than one FFT frame
    # (a one-sample file) is padded with silence to one frame first
    pieces = [np.pad(p, (0, max(0, N_FFT - len(p)))) for p in pieces]
    mels = [
        pad_or_trim(
            log_mel_spectrogram(
                torch.from_numpy(np.ascontiguousarray(piece[:N_SAMPLES])),
                model.dims.n_mels,
                padding=HOP_LENGTH,
                device=model.device,
            ),
            N_FRAMES,
        )
        for piece in pieces
    ]
    return torch.stack(mels)


CPU_BATCH_SIZE = 8  # bench/RESULTS.md: 8-16 windows are best on 2 cores
MAX_BATCH_SIZE = 256
GPU_MEMORY_SHARE = 0.7  # of the free memory, for the batch's working set


def window_bytes(dims: WhisperDims, dtype_bytes: int, beam_size: int = 1) -> int:
    """Working memory one 30 s window needs while it is decoded, estimated from
    the architecture: cross-attention K/V of every decoder layer (kept for the
    whole decode; twice, as the fixed-shape decoder copies them into its own
    buffers), self-attention K/V grown to the full text context, the
    encoder's largest live activations (the 4x MLP and attention projections,
    about 12 copies of one layer's output) and float32 logits."""
    cross_kv = 2 * 2 * dims.n_text_layer * dims.n_audio_ctx * dims.n_text_state
    self_kv = 2 * dims.n_text_layer * dims.n_text_ctx * dims.n_text_state * beam_size
    encoder = 12 * dims.n_audio_ctx * dims.n_audio_state
    logits = 4 * dims.n_vocab * beam_size  # bytes, always float32
    return dtype_bytes * (cross_kv + self_kv + encoder) + logits


def auto_batch_size(model: Whisper, beam_size: int = 1, free_bytes=None) -> int:
    """Windows per batch for `TranscribeOptions.batch_size = 0` ("auto").

    On CUDA: as many as `GPU_MEMORY_SHARE` of the free memory holds by
    `window_bytes`, between 1 and `MAX_BATCH_SIZE` (an out-of-memory error is still
    caught upstream, which halves the batch). On CPU: `CPU_BATCH_SIZE`.
    """
    param = next(model.parameters())
    if param.device.type != "cuda" and free_bytes is None:
        return CPU_BATCH_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(param.device)
    per_window = window_bytes(model.dims, param.element_size(), beam_size)
    fits = int(free_bytes * GPU_MEMORY_SHARE // per_window)
    return max(1, min(MAX_BATCH_SIZE, fits))


def loader_threads(n_items: int) -> int:
    """Threads that plan windows and cut audio ahead of the model: a few on a big
    machine (a GPU host), one on a 2-core CPU where the model needs the cores."""
    return max(1, min(n_items, (os.cpu_count() or 1) // 2, 8))


@dataclass
class _Recording:
    """What one recording's transcription has gathered so far."""

    audio: np.ndarray
    probs: np.ndarray  # VAD speech probability per 32 ms frame
    windows: deque[Window]  # planned windows not yet queued (conditioning)
    segments: list[Segment] = field(default_factory=list)
    results: list[DecodingResult] = field(default_factory=list)
    words: list = field(default_factory=list)
    context: list[int] = field(default_factory=list)  # text tokens so far


@dataclass
class _Decoded:
    """A decoded window, judged: what it adds to its recording."""

    segments: list[Segment]
    tokens: list[int]  # text tokens of the kept segments (for prompts and words)
    again: list[Window]  # parts left undecoded, to decode again


def transcribe_vad_batched(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    audios: list[np.ndarray],
    options: TranscribeOptions,
    on_progress: ProgressFn | None = None,
) -> list[Transcription]:
    """Transcribe recordings through VAD windows decoded in batches across them.

    Parameters
    ----------
    audios
        Float32 16 kHz mono recordings, each ``(n_samples,)``, any length (or
        :class:`~s2s_models.audio.FlacAudio`, read slice by slice).

    Returns
    -------
    list[Transcription]
        One per input, in input order.
    """
    with ThreadPoolExecutor(loader_threads(len(audios))) as pool:
        # VAD of several files at once (onnxruntime releases the GIL)
        probs = list(pool.map(lambda audio: _speech_probs(audio, options), audios))
        recordings = []
        for audio, p in zip(audios, probs, strict=True):
            plan = plan_windows(p, len(audio) / SAMPLE_RATE, options)
            windows = deque(
                Window(len(recordings), pieces, index)
                for index, pieces in enumerate(plan)
            )
            recordings.append(_Recording(audio, p, windows))
        _WindowDecoder(model, tokenizer, recordings, options, on_progress, pool).run()
    language = options.language or "en"
    out = []
    for rec in recordings:
        order = sorted(range(len(rec.segments)), key=lambda i: rec.segments[i].start_s)
        segments = clean_segments([rec.segments[i] for i in order], options)
        words = sorted(rec.words, key=lambda w: w.start_s)
        out.append(
            assemble(
                segments, rec.results, len(rec.audio) / SAMPLE_RATE, language, words
            )
        )
    return out


def _speech_probs(audio, options: TranscribeOptions) -> np.ndarray:
    """The VAD probabilities a recording's windows are planned from: with
    ``rescore_silences``, each would-be-cut silence scored again alone."""
    probs = vad.speech_probabilities(audio)
    if options.rescore_silences:
        probs = rescore_silences(audio, probs, options)
    return probs


class _WindowDecoder:
    """The decode loop of VAD mode over a queue of windows (see module docstring)."""

    def __init__(self, model, tokenizer, recordings, options, on_progress, pool):
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.recordings: list[_Recording] = recordings
        self.on_progress, self.pool = on_progress, pool
        self.decoding = options.decoding_options()
        self.batch_size = options.batch_size or auto_batch_size(
            model, options.beam_size
        )
        self.queue: deque[Window] = deque()
        if options.conditioning:
            for rec in recordings:  # one window of each recording at a time
                if rec.windows:
                    self.queue.append(rec.windows.popleft())
        else:
            planned = [w for rec in recordings for w in rec.windows]
            # similar lengths in a batch -> similar token counts, few idle rows
            self.queue.extend(sorted(planned, key=lambda w: -w.duration_s))
            for rec in recordings:
                rec.windows.clear()
        self.total_s = sum(len(r.audio) for r in recordings) / SAMPLE_RATE
        self.planned_s = sum(w.duration_s for w in self.queue) + sum(
            w.duration_s for r in recordings for w in r.windows
        )
        self.done_s = 0.0

    def run(self) -> None:
        ahead = None  # (batch, future of its audio) cut while the model works
        while self.queue or ahead is not None:
            if ahead is None:
                batch = self._take()
                pieces = [w.samples(self.recordings[w.item].audio) for w in batch]
            else:
                batch, future = ahead
                pieces = future.result()
                ahead = None
            if not self.options.conditioning and self.queue:
                following = self._take()
                ahead = (following, self.pool.submit(self._cut, following))
            self._decode_batch(batch, pieces)
        if self.on_progress is not None:
            self.on_progress(self.total_s)

    def _take(self) -> list[Window]:
        return [
            self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))
        ]

    def _cut(self, batch: list[Window]) -> list[np.ndarray]:
        return [w.samples(self.recordings[w.item].audio) for w in batch]

    def _decode_batch(self, batch: list[Window], pieces: list[np.ndarray]) -> None:
        mel = window_mels(self.model, pieces, self.options.feature_padding)
        with torch.inference_mode():
            features = self.model.embed_audio(mel)
        # windows with the same prompt length decode together
        groups: dict[int, list[int]] = {}
        prompts = [self._prompt(w) for w in batch]
        for i, prompt in enumerate(prompts):
            groups.setdefault(len(prompt) if prompt else 0, []).append(i)
        results: list[DecodingResult | None] = [None] * len(batch)
        for rows in groups.values():
            prompt = prompts[rows[0]]
            decoding = replace(self.decoding, prompt=tuple(prompt) if prompt else None)
            found = decode_with_fallback(
                self.model, self.tokenizer, features[rows], decoding,
                temperatures=self.options.temperatures,
                compression_ratio_threshold=self.options.compression_ratio_threshold,
                logprob_threshold=self.options.logprob_threshold,
                no_speech_threshold=self.options.no_speech_threshold,
                needs_retry=lambda j, r, ws=[batch[i] for i in rows]: (
                    self._implausible(ws[j], r)
                ),
            )  # fmt: skip
            for i, result in zip(rows, found, strict=True):
                results[i] = result
        judged = [self._judge(w, r) for w, r in zip(batch, results, strict=True)]
        if self.options.word_timestamps:
            self._add_words(batch, results, judged, features)
        for window, result, decoded in zip(batch, results, judged, strict=True):
            rec = self.recordings[window.item]
            rec.segments += decoded.segments
            if decoded.segments and not all(
                s.flag == NO_SPEECH for s in decoded.segments
            ):
                rec.results.append(result)
            if result.temperature <= 0.5:  # a hot window's text is a poor prompt
                # text only: with its window's timestamp tokens in the prompt,
                # tiny.en stops early in most windows (measured, bench/RESULTS.md)
                rec.context = (rec.context + decoded.tokens)[-MAX_PROMPT:]
            self.queue.extend(decoded.again)
            if not decoded.again:
                self.done_s += window.duration_s
                if rec.windows:  # conditioning: the recording's next window
                    self.queue.append(rec.windows.popleft())
        if self.on_progress is not None:
            self.on_progress(self.total_s * self.done_s / max(self.planned_s, 1e-9))

    def _prompt(self, window: Window) -> list[int] | None:
        """Previous text when conditioning (cut to a power of two of tokens so that
        windows of different recordings still batch together), else the initial
        prompt on every window."""
        rec = self.recordings[window.item]
        if self.options.conditioning and rec.context:
            keep = 1 << (min(len(rec.context), MAX_PROMPT).bit_length() - 1)
            return rec.context[-keep:]
        if self.options.initial_prompt:
            return self.tokenizer.encode(" " + self.options.initial_prompt.strip())
        return None

    def _speech_s(self, window: Window, weak: bool = False) -> float:
        probs = self.recordings[window.item].probs
        o = self.options
        threshold = o.weak_speech_threshold if weak else o.vad_threshold
        return speech_seconds(probs, window.pieces, threshold)

    def _implausible(self, window: Window, result: DecodingResult) -> bool:
        """Text that cannot be the window's speech: none although the VAD hears
        speech (unless Whisper judges it silence), or too many words per second."""
        n_words = len(result.text.split())
        if n_words == 0:
            silent = is_silence(result, self.options)
            return (
                not silent and self._speech_s(window) >= self.options.remainder_speech_s
            )
        speech_s = max(self._speech_s(window), 1.0)
        return n_words / speech_s > self.options.max_words_per_s

    def _judge(self, window: Window, result: DecodingResult) -> _Decoded:
        """Segments a decoded window adds, and the parts of it to decode again:
        speech after its last complete segment, and speech its timestamps jump
        over (a gap between segments, or before the first one)."""
        options = self.options
        span = (window.start_s, window.end_s)
        if is_silence(result, options):
            if self._speech_s(window) >= options.remainder_speech_s:
                return _Decoded([_segment(*span, "", result, NO_SPEECH)], [], [])
            return _Decoded([], [], [])
        flag = IMPLAUSIBLE_RATE if self._implausible(window, result) else None
        pieces = list(result.segments)
        if not pieces:  # decoded without timestamps: the window is one segment
            tokens = [t for t in result.tokens if t < self.tokenizer.eot]
            return _Decoded([_segment(*span, result.text, result, flag)], tokens, [])
        closed = [p for p in pieces if p.end is not None]
        if not closed:  # nothing to seek from: keep what was decoded
            segments = self._segments(window, pieces, result, flag)
            return _Decoded(segments, _tokens(pieces), [])
        gaps = self._uncovered(window, closed)
        covered = max(p.end for p in closed)
        rest = window.after(covered) if covered >= MIN_ADVANCE_S else None
        if (
            rest is not None
            and self._speech_s(rest, True) >= options.remainder_speech_s
        ):
            # decoding stopped before the speech ended: the open end (if any) is
            # decoded again with the rest of the window
            pieces = closed
            gaps.append(rest)
        segments = self._segments(window, pieces, result, flag)
        if gaps and window.attempt + 1 >= MAX_ATTEMPTS:
            for gap in gaps:
                segments.append(_segment(gap.start_s, gap.end_s, "", result, UNDECODED))
            gaps = []
        return _Decoded(segments, _tokens(pieces), gaps)

    def _uncovered(self, window: Window, closed: list) -> list[Window]:
        """Stretches between complete segments (and before the first) that hold
        at least ``remainder_speech_s`` of VAD speech."""
        gaps, edge = [], 0.0
        for piece in sorted(closed, key=lambda p: p.start):
            if piece.start - edge >= MIN_ADVANCE_S:
                gap = window.between(edge, piece.start)
                if gap and self._speech_s(gap, True) >= self.options.remainder_speech_s:
                    gaps.append(gap)
            edge = max(edge, piece.end)
        return gaps

    def _segments(self, window, pieces, result, flag) -> list[Segment]:
        out = []
        for p in pieces:
            start = window.to_recording(p.start)
            end = window.end_s if p.end is None else window.to_recording(p.end)
            out.append(_segment(start, max(start, end), p.text, result, flag))
        return out

    def _add_words(self, batch, results, judged, features) -> None:
        """Word timings of every judged window with text (one aligner pass)."""
        rows = [i for i, d in enumerate(judged) if d.tokens]
        if not rows:
            return
        timings = align_words(
            self.model, self.tokenizer, features[rows],
            [judged[i].tokens for i in rows],
            [round(batch[i].duration_s * SAMPLE_RATE / HOP_LENGTH) for i in rows],
            [results[i].language for i in rows], self.options.task,
        )  # fmt: skip
        for i, words in zip(rows, timings, strict=True):
            window = batch[i]
            rec = self.recordings[window.item]
            before = [w.end_s for w in rec.words if w.end_s <= window.start_s]
            rec.words += words_in_recording(
                words, window.to_recording, max(before, default=0.0)
            )


def _tokens(pieces) -> list[int]:
    return [t for p in pieces for t in p.tokens]


def _segment(start_s, end_s, text, result: DecodingResult, flag=None) -> Segment:
    return Segment(
        start_s=round(start_s, 3),
        end_s=round(end_s, 3),
        text=text,
        avg_logprob=result.avg_logprob,
        no_speech_prob=result.no_speech_prob,
        compression_ratio=result.compression_ratio,
        temperature=result.temperature,
        flag=flag,
    )
