"""Sequential mode: openai-whisper's seek loop, one recording at a time.

Decode the 30 s window at ``seek`` with timestamps, move ``seek`` to the end of the
last complete segment (or the window's end), and give the text so far as the prompt
of the next window unless the window needed a high temperature. Windows judged to
be silence (openai-whisper's rule) are skipped. Each segment then goes through the
hallucination-loop cleaning both modes share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from s2s_models.audio import (
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    log_mel_spectrogram,
    pad_or_trim,
)
from s2s_models.whisper import vad
from s2s_models.whisper.alignment import align_words, words_in_recording
from s2s_models.whisper.decoding import DecodingResult, decode_with_fallback
from s2s_models.whisper.model import Whisper
from s2s_models.whisper.tokenizer import TIME_PRECISION, WhisperTokenizer
from s2s_models.whisper.transcription import (
    Segment,
    TranscribeOptions,
    Transcription,
    Word,
    assemble,
    clean_segments,
    is_silence,
)
from s2s_models.whisper.windows import plan_windows

FRAMES_PER_TIMESTAMP = round(TIME_PRECISION * SAMPLE_RATE / HOP_LENGTH)  # 2
assert FRAMES_PER_TIMESTAMP * HOP_LENGTH == TIME_PRECISION * SAMPLE_RATE
MAX_PROMPT = 223  # prompt tokens kept: half the decoder context, less <|startofprev|>


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
    on_progress: Callable[[float], None] | None = None,
) -> Transcription:
    """Transcribe one recording with openai-whisper's seek-by-timestamp loop.

    A recording is skipped only when VAD mode would plan no window for it (longer
    than 30 s without even weak speech); otherwise every window is decoded, and only
    Whisper's own rule (no-speech probability high and text improbable) skips one as
    silence.
    """
    duration_s = len(audio) / SAMPLE_RATE
    if not plan_windows(vad.speech_probabilities(audio), duration_s, options):
        return assemble([], [], duration_s, options.language or "en")
    # one mel over the whole file + 30 s of zeros; windows are slices of it
    mel = log_mel_spectrogram(
        audio, model.dims.n_mels, padding=N_SAMPLES, device=model.device
    )
    n_content = mel.shape[-1] - N_FRAMES  # frames of real audio
    base = options.decoding_options(without_timestamps=False)
    prompt = options.initial_prompt
    context = tokenizer.encode(" " + prompt.strip()) if prompt else []
    segments: list[Segment] = []
    words: list[Word] = []
    windows: list[DecodingResult] = []
    seek = 0
    while seek < n_content:
        window_frames = min(N_FRAMES, n_content - seek)
        window = pad_or_trim(mel[:, seek : seek + N_FRAMES], N_FRAMES)[None]
        decoding = replace(base, prompt=tuple(context) if context else None)
        features = model.embed_audio(window)
        [result] = decode_with_fallback(
            model, tokenizer, features, decoding,
            temperatures=options.temperatures,
            compression_ratio_threshold=options.compression_ratio_threshold,
            logprob_threshold=options.logprob_threshold,
            no_speech_threshold=options.no_speech_threshold,
        )  # fmt: skip
        offset_s = seek * HOP_LENGTH / SAMPLE_RATE
        if is_silence(result, options):
            seek += window_frames
            continue
        pieces, advance = split_at_timestamps(
            list(result.tokens), tokenizer.timestamp_begin, window_frames
        )
        for start, end, piece in pieces:
            text = tokenizer.decode(piece)  # drops the timestamp tokens
            segments.append(
                Segment(
                    round(offset_s + start, 3), round(offset_s + end, 3), text,
                    result.avg_logprob, result.no_speech_prob,
                    result.compression_ratio, result.temperature,
                )
            )  # fmt: skip
        text_tokens = [t for *_, piece in pieces for t in piece if t < tokenizer.eot]
        if options.word_timestamps and text_tokens:
            [timed] = align_words(
                model, tokenizer, features, [text_tokens], [window_frames],
                result.language, options.task,
            )  # fmt: skip
            last = words[-1].end_s if words else 0.0
            words += words_in_recording(timed, lambda t, o=offset_s: o + t, last)
        windows.append(result)
        seek += advance
        if options.conditioning and result.temperature <= 0.5:
            context = (context + [t for *_, piece in pieces for t in piece])[
                -MAX_PROMPT:
            ]
        else:
            context = []  # a hot window's text is a poor prompt
        if on_progress is not None:
            on_progress(min(seek, n_content) * HOP_LENGTH / SAMPLE_RATE)
    return assemble(
        clean_segments(segments, options), windows, duration_s,
        options.language or "en", words,
    )  # fmt: skip
