"""Transcribing recordings of any length with a 30-second Whisper model.

Two modes share one result type (:class:`Transcription`):

``vad`` (default, :func:`transcribe_vad_batched`)
    Silero VAD finds speech; :func:`~s2s_models.whisper.vad.plan_chunks` groups it
    into windows of at most 30 s cut in pauses (a file of at most 30 s with any
    speech is one window). Windows of *all* files are sorted by length and decoded
    in batches, with temperature fallback, then put back in each file's order with
    absolute times. Windows never overlap, so no text is emitted twice.

``sequential`` (:func:`transcribe_sequential`)
    openai-whisper's loop, one file at a time: decode the 30 s window at ``seek``
    with timestamps, move ``seek`` to the end of the last complete segment (or the
    window's end), and give the text so far as the prompt of the next window unless
    the window needed a high temperature. Windows judged to be silence are skipped.

In both modes each segment goes through :func:`clean_segment_text`: a run of one
n-gram repeated many times (Whisper's hallucination loop) is cut back to one copy,
and a segment whose text still compresses too well is dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

from s2s_models.audio import (
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    log_mel_spectrogram,
    pad_or_trim,
)
from s2s_models.whisper import vad
from s2s_models.whisper.api import Segment, TranscribeOptions, Transcription
from s2s_models.whisper.decoding import (
    DecodingOptions,
    DecodingResult,
    compression_ratio,
    decode_with_fallback,
)
from s2s_models.whisper.model import Whisper, WhisperDims
from s2s_models.whisper.tokenizer import TIME_PRECISION, WhisperTokenizer

FRAMES_PER_TIMESTAMP = round(TIME_PRECISION * SAMPLE_RATE / HOP_LENGTH)  # 2
assert FRAMES_PER_TIMESTAMP * HOP_LENGTH == TIME_PRECISION * SAMPLE_RATE
ProgressFn = Callable[[float], None]
_MAX_PROMPT = 223  # prompt tokens kept: half the decoder context, less <|startofprev|>


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
) -> tuple[str, bool]:
    """Cut hallucination loops out of ``text``; drop it if still too repetitive.

    Returns
    -------
    (text, flagged)
        ``flagged`` is True when a loop was cut or the text was dropped.
    """
    words = text.split()
    flagged = False
    while (loop := find_loop(words, min_repeats, min_words)) is not None:
        start, n, repeats = loop
        words = words[: start + n] + words[start + n * repeats :]
        flagged = True
    cleaned = " ".join(words)
    if ratio_threshold is not None and compression_ratio(cleaned) > ratio_threshold:
        return "", True
    if flagged or cleaned != text.strip():
        return (" " + cleaned if cleaned else ""), flagged
    return text, False


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------
def is_silence(result: DecodingResult, options: TranscribeOptions) -> bool:
    """openai-whisper's rule: likely no speech, and the text is not confident."""
    if options.no_speech_threshold is None:
        return False
    silent = result.no_speech_prob > options.no_speech_threshold
    if options.logprob_threshold is not None:
        silent = silent and result.avg_logprob < options.logprob_threshold
    return silent


def _decode(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    mel: torch.Tensor,
    options: TranscribeOptions,
    decoding: DecodingOptions,
) -> list[DecodingResult]:
    return decode_with_fallback(
        model,
        tokenizer,
        mel,
        decoding,
        temperatures=options.temperatures,
        compression_ratio_threshold=options.compression_ratio_threshold,
        logprob_threshold=options.logprob_threshold,
        no_speech_threshold=options.no_speech_threshold,
    )


def _segment(start_s, end_s, text, result: DecodingResult) -> Segment:
    return Segment(
        start_s=round(start_s, 3),
        end_s=round(end_s, 3),
        text=text,
        avg_logprob=result.avg_logprob,
        no_speech_prob=result.no_speech_prob,
        compression_ratio=result.compression_ratio,
        temperature=result.temperature,
    )


def _clean(segments: list[Segment], options: TranscribeOptions) -> list[Segment]:
    """Apply :func:`clean_segment_text` to every segment; drop empty ones."""
    kept = []
    for seg in segments:
        text, _ = clean_segment_text(
            seg.text,
            options.compression_ratio_threshold,
            options.loop_min_repeats,
            options.loop_min_words,
        )
        if text.strip():
            kept.append(replace(seg, text=text))
    return kept


def assemble(
    segments: list[Segment],
    windows: list[DecodingResult],
    duration_s: float,
    default_language: str,
) -> Transcription:
    """Join cleaned segments and summarise the windows they came from."""
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    if not windows:
        return Transcription(text, default_language, [], duration_s=duration_s)
    n_tokens = [len(w.tokens) + 1 for w in windows]  # +1: the end-of-text token
    languages: dict[str, int] = {}
    for w, n in zip(windows, n_tokens, strict=True):
        languages[w.language] = languages.get(w.language, 0) + n
    return Transcription(
        text=text,
        language=max(languages, key=languages.get),
        segments=segments,
        avg_logprob=float(
            np.average([w.avg_logprob for w in windows], weights=n_tokens)
        ),
        no_speech_prob=float(np.mean([w.no_speech_prob for w in windows])),
        compression_ratio=compression_ratio(text),
        temperature=max(w.temperature for w in windows),
        duration_s=duration_s,
    )


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


def _samples(audio: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return audio[round(start_s * SAMPLE_RATE) : round(end_s * SAMPLE_RATE)]


# ---------------------------------------------------------------------------
# Mode "vad": VAD windows of all files, batched
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """One decoding window: ``audio[start_s:end_s]`` of file ``item``."""

    item: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def plan_windows(
    audio: np.ndarray, options: TranscribeOptions
) -> list[tuple[float, float]]:
    """Decoding windows of one file: [] without speech, the whole file if <= 30 s."""
    total_s = len(audio) / SAMPLE_RATE
    if total_s == 0:
        return []
    probs = vad.speech_probabilities(audio)
    regions = vad.probabilities_to_timestamps(probs, total_s, options.vad_options())
    if not regions:
        return []
    if total_s <= options.max_chunk_s:
        return [(0.0, total_s)]
    return vad.plan_chunks(
        regions, total_s, frame_scores=probs, options=options.chunk_options()
    )


def window_segments(
    window: Window, result: DecodingResult, tokenizer: WhisperTokenizer
) -> list[Segment]:
    """Segments of one decoded window in absolute time (one if no timestamps)."""
    if not result.segments:
        return [_segment(window.start_s, window.end_s, result.text, result)]
    segments = []
    for seg in result.segments:
        end = window.end_s if seg.end is None else window.start_s + seg.end
        start = min(window.start_s + seg.start, end)
        segments.append(_segment(start, min(end, window.end_s), seg.text, result))
    return segments


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


def transcribe_vad_batched(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    audios: list[np.ndarray],
    options: TranscribeOptions,
    on_progress: ProgressFn | None = None,
) -> list[Transcription]:
    """Transcribe files through VAD windows decoded in batches across files.

    Parameters
    ----------
    audios
        Float32 16 kHz mono recordings, each ``(n_samples,)``, any length.

    Returns
    -------
    list[Transcription]
        One per input, in input order.
    """
    with ThreadPoolExecutor(loader_threads(len(audios))) as pool:
        # VAD of several files at once (onnxruntime releases the GIL)
        plans = list(pool.map(lambda audio: plan_windows(audio, options), audios))
        return _decode_windows(
            model, tokenizer, audios, plans, options, on_progress, pool
        )


def loader_threads(n_items: int) -> int:
    """Threads that plan windows and cut audio ahead of the model: a few on a big
    machine (a GPU host), one on a 2-core CPU where the model needs the cores."""
    return max(1, min(n_items, (os.cpu_count() or 1) // 2, 8))


def _decode_windows(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    audios: list[np.ndarray],
    plans: list[list[tuple[float, float]]],
    options: TranscribeOptions,
    on_progress: ProgressFn | None,
    pool: ThreadPoolExecutor,
) -> list[Transcription]:
    """Decode the planned windows in batches; the next batch's audio is cut (and,
    for FlacAudio, decoded) in ``pool`` while the model works on the current one."""
    windows = [
        Window(i, start, end) for i, plan in enumerate(plans) for start, end in plan
    ]
    # similar lengths in a batch -> similar token counts, few steps at low occupancy
    windows.sort(key=lambda w: w.duration_s, reverse=True)
    decoding = options.decoding_options()
    per_item: list[list[tuple[Window, DecodingResult]]] = [[] for _ in audios]
    total_s = sum(len(a) for a in audios) / SAMPLE_RATE
    window_total = sum(w.duration_s for w in windows) or 1.0
    done = 0.0
    batch_size = options.batch_size or auto_batch_size(model, options.beam_size)
    batches = [
        windows[first : first + batch_size]
        for first in range(0, len(windows), batch_size)
    ]

    def cut(batch: list[Window]) -> list[np.ndarray]:
        return [_samples(audios[w.item], w.start_s, w.end_s) for w in batch]

    ahead = pool.submit(cut, batches[0]) if batches else None
    for k, batch in enumerate(batches):
        pieces = ahead.result()
        if k + 1 < len(batches):
            ahead = pool.submit(cut, batches[k + 1])
        results = _decode(
            model,
            tokenizer,
            window_mels(model, pieces, options.feature_padding),
            options,
            decoding,
        )
        for window, result in zip(batch, results, strict=True):
            per_item[window.item].append((window, result))
        done += sum(w.duration_s for w in batch)
        if on_progress is not None:
            on_progress(total_s * done / window_total)
    if on_progress is not None and not windows:
        on_progress(total_s)
    default_language = options.language or "en"
    transcriptions = []
    for audio, decoded in zip(audios, per_item, strict=True):
        decoded.sort(key=lambda pair: pair[0].start_s)
        kept = [(w, r) for w, r in decoded if not is_silence(r, options)]
        segments = [s for w, r in kept for s in window_segments(w, r, tokenizer)]
        transcriptions.append(
            assemble(
                _clean(segments, options),
                [r for _, r in kept],
                len(audio) / SAMPLE_RATE,
                default_language,
            )
        )
    return transcriptions


# ---------------------------------------------------------------------------
# Mode "sequential": openai-whisper's seek loop, one file at a time
# ---------------------------------------------------------------------------
def split_at_timestamps(
    tokens: list[int], timestamp_begin: int, window_frames: int
) -> tuple[list[tuple[float, float, list[int]]], int]:
    """Segments of one window's tokens and how far to move ``seek``.

    Parameters
    ----------
    tokens
        Sampled tokens of the window (text and timestamp tokens, no end-of-text).
    timestamp_begin
        Id of ``<|0.00|>``.
    window_frames
        Mel frames of audio in the window (3000, fewer at the end of a file).

    Returns
    -------
    (segments, advance)
        ``segments`` are (start_s, end_s, tokens) relative to the window start,
        tokens with their timestamp tokens (Whisper's prompt format);
        ``advance`` is in mel frames: to the end of the last closed segment when
        the window ends mid-segment, else the whole window.
    """
    is_ts = [t >= timestamp_begin for t in tokens]
    window_s = window_frames * HOP_LENGTH / SAMPLE_RATE
    single_ending = is_ts[-2:] == [False, True]
    # a closed segment is followed by the opening timestamp of the next one
    cuts = [i for i in range(1, len(tokens)) if is_ts[i - 1] and is_ts[i]]
    if not cuts:
        stamps = [t for t in tokens if t >= timestamp_begin]
        end_s = window_s
        if stamps and stamps[-1] != timestamp_begin:
            end_s = (stamps[-1] - timestamp_begin) * TIME_PRECISION
        has_text = any(t < timestamp_begin for t in tokens)
        return ([(0.0, end_s, tokens)] if has_text else []), window_frames
    if single_ending:
        cuts.append(len(tokens))
    segments, last = [], 0
    for cut in cuts:
        piece = tokens[last:cut]
        start = (piece[0] - timestamp_begin) * TIME_PRECISION
        end = (piece[-1] - timestamp_begin) * TIME_PRECISION
        if any(t < timestamp_begin for t in piece):
            segments.append((start, end, piece))
        last = cut
    if single_ending:
        return segments, window_frames
    advance = (tokens[last - 1] - timestamp_begin) * FRAMES_PER_TIMESTAMP
    return segments, advance if advance > 0 else window_frames


def transcribe_sequential(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    audio: np.ndarray,
    options: TranscribeOptions,
    on_progress: ProgressFn | None = None,
) -> Transcription:
    """Transcribe one recording with openai-whisper's seek-by-timestamp loop."""
    duration_s = len(audio) / SAMPLE_RATE
    if not vad.probabilities_to_timestamps(
        vad.speech_probabilities(audio), duration_s, options.vad_options()
    ):
        return assemble([], [], duration_s, options.language or "en")
    # one mel over the whole file + 30 s of zeros; windows are slices of it
    mel = log_mel_spectrogram(
        audio, model.dims.n_mels, padding=N_SAMPLES, device=model.device
    )
    n_content = mel.shape[-1] - N_FRAMES  # frames of real audio
    base = options.decoding_options(without_timestamps=False)
    context: list[int] = (
        tokenizer.encode(" " + options.initial_prompt.strip())
        if (options.initial_prompt)
        else []
    )
    segments: list[Segment] = []
    windows: list[DecodingResult] = []
    seek = 0
    while seek < n_content:
        window_frames = min(N_FRAMES, n_content - seek)
        window = pad_or_trim(mel[:, seek : seek + N_FRAMES], N_FRAMES)[None]
        decoding = replace(base, prompt=tuple(context) if context else None)
        result = _decode(model, tokenizer, window.to(model.device), options, decoding)[
            0
        ]
        offset_s = seek * HOP_LENGTH / SAMPLE_RATE
        if is_silence(result, options):
            seek += window_frames
            continue
        pieces, advance = split_at_timestamps(
            list(result.tokens), tokenizer.timestamp_begin, window_frames
        )
        for start, end, piece in pieces:
            text = tokenizer.decode(piece)  # drops the timestamp tokens
            segments.append(_segment(offset_s + start, offset_s + end, text, result))
        windows.append(result)
        seek += advance
        if options.condition_on_previous_text and result.temperature <= 0.5:
            context = (context + [t for *_, piece in pieces for t in piece])[
                -_MAX_PROMPT:
            ]
        else:
            context = []  # a hot window's text is a poor prompt
        if on_progress is not None:
            on_progress(min(seek, n_content) * HOP_LENGTH / SAMPLE_RATE)
    return assemble(
        _clean(segments, options), windows, duration_s, options.language or "en"
    )
