"""Planning the 30-second windows of VAD mode, and mapping their times back.

A window is a list of *pieces* of one recording, joined: the audio of a recording
less the stretches of confident silence (cut out), packed into windows of at most
``max_chunk_s`` seconds. Three frame classes come from the Silero VAD
probabilities (one per 32 ms):

* speech: the padded regions of :func:`vad.probabilities_to_timestamps` at
  ``vad_threshold``;
* weak speech: the same at ``weak_speech_threshold`` (whispers, distant or
  band-limited talk, which a VAD scores low);
* confident silence: the rest. A stretch of it at least ``min_silence_cut_s`` long
  is cut out of the audio a window holds, so the decoder neither spends time on it
  nor invents text in it; shorter pauses stay, as speech has them.

Silero's probabilities depend on what it heard before: its state carries over, and
quiet speech right after loud speech (a whisper, an aside) can score under the weak
threshold although the same audio alone scores 0.9. So with ``rescore_silences``
each stretch that would be cut is scored again on its own, from a fresh state
(:func:`rescore_silences`), and keeps the higher of the two scores.

A file of at most ``max_chunk_s`` with no speech at all is still one window (the
whole file): whether it holds speech is then Whisper's own decision (its no-speech
rule), not the VAD's. A longer run of speech than ``max_chunk_s`` is cut at its
quietest frame.

Times inside a window (Whisper's timestamps) map back to the recording with
:meth:`Window.to_recording`; :meth:`Window.after` is the rest of a window from a
given time on, for decoding again what a window left undecoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2s_models.whisper import vad
from s2s_models.whisper.transcription import TranscribeOptions

FRAME_S = vad.FRAME_S


@dataclass(frozen=True)
class Window:
    """Pieces ``[(start_s, end_s), ...]`` of recording ``item``, in time order,
    joined into one decoding window. ``index`` orders a recording's planned
    windows; ``attempt`` counts re-decodings of what a window left undecoded."""

    item: int
    pieces: tuple[tuple[float, float], ...]
    index: int = 0
    attempt: int = 0

    @property
    def start_s(self) -> float:
        return self.pieces[0][0]

    @property
    def end_s(self) -> float:
        return self.pieces[-1][1]

    @property
    def duration_s(self) -> float:
        """Seconds of audio the window holds (cut silences excluded)."""
        return sum(b - a for a, b in self.pieces)

    def to_recording(self, t: float) -> float:
        """A time in the window's audio -> seconds in the recording."""
        offset = 0.0
        for a, b in self.pieces:
            if t <= offset + (b - a) + 1e-9:
                return a + max(0.0, t - offset)
            offset += b - a
        return self.end_s

    def between(self, t0: float, t1: float | None = None) -> Window | None:
        """The window's audio from window time ``t0`` to ``t1`` (its end when None),
        as the next attempt; None when that is empty."""
        start = self.to_recording(t0)
        end = self.end_s if t1 is None else self.to_recording(t1)
        pieces = tuple(
            (max(a, start), min(b, end))
            for a, b in self.pieces
            if b > start + 1e-6 and a < end - 1e-6
        )
        if not pieces:
            return None
        return Window(self.item, pieces, self.index, self.attempt + 1)

    def after(self, t: float) -> Window | None:
        """The window's audio from window time ``t`` on (None when nothing is
        left), as the next attempt."""
        return self.between(t)

    def samples(self, audio) -> np.ndarray:
        """The window's audio, its pieces joined: (n_samples,) float32."""
        parts = [
            np.asarray(
                audio[round(a * vad.VAD_SAMPLE_RATE) : round(b * vad.VAD_SAMPLE_RATE)]
            )
            for a, b in self.pieces
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)


def speech_seconds(probs: np.ndarray, pieces, threshold: float) -> float:
    """Seconds of frames at or above ``threshold`` inside ``pieces``."""
    total = 0
    for a, b in pieces:
        lo, hi = int(a / FRAME_S), int(np.ceil(b / FRAME_S))
        total += int(np.count_nonzero(probs[lo:hi] >= threshold))
    return total * FRAME_S


def active_pieces(
    probs: np.ndarray, total_s: float, options: TranscribeOptions
) -> list[tuple[float, float]]:
    """The recording less its confident silences of ``min_silence_cut_s`` or more:
    sorted, non-overlapping (start_s, end_s). Empty when it has no speech at all."""
    spans = vad.probabilities_to_timestamps(probs, total_s, options.vad_options())
    spans += vad.probabilities_to_timestamps(
        probs, total_s, options.vad_options(options.weak_speech_threshold)
    )
    merged: list[list[float]] = []
    for a, b in sorted(spans):
        if merged and a - merged[-1][1] < options.min_silence_cut_s:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    # the recording's edges: keep a short leading or trailing pause whole
    if merged and merged[0][0] < options.min_silence_cut_s:
        merged[0][0] = 0.0
    if merged and total_s - merged[-1][1] < options.min_silence_cut_s:
        merged[-1][1] = total_s
    return [(a, b) for a, b in merged if b > a]


def cut_silences(
    probs: np.ndarray, total_s: float, options: TranscribeOptions
) -> list[tuple[float, float]]:
    """The stretches :func:`active_pieces` cuts out: the complement of its pieces
    (the whole recording when it has no speech)."""
    edges = [0.0]
    for a, b in active_pieces(probs, total_s, options):
        edges += [a, b]
    edges.append(total_s)
    pairs = zip(edges[0::2], edges[1::2], strict=True)
    return [(a, b) for a, b in pairs if b - a > 1e-6]


def rescore_silences(
    audio, probs: np.ndarray, options: TranscribeOptions
) -> np.ndarray:
    """Speech probabilities with each would-be-cut silence scored again alone.

    Every stretch :func:`cut_silences` returns is run through the VAD by itself,
    from a fresh state (frames aligned with the recording's), and each frame keeps
    the higher of its two probabilities. Costs one more VAD pass over the
    silences only. Returns a new array (``probs`` is left as it is)."""
    total_s = len(audio) / vad.VAD_SAMPLE_RATE
    out = np.array(probs, dtype=np.float32, copy=True)
    for a, b in cut_silences(probs, total_s, options):
        lo = int(round(a / FRAME_S))
        hi = min(len(out), int(round(b / FRAME_S)))
        if hi - lo < 2:
            continue
        piece = np.asarray(
            audio[lo * vad.FRAME_SAMPLES : hi * vad.FRAME_SAMPLES], dtype=np.float32
        )
        alone = vad.speech_probabilities(piece)[: hi - lo]
        np.maximum(out[lo : lo + len(alone)], alone, out=out[lo : lo + len(alone)])
    return out


def plan_windows(
    probs: np.ndarray, total_s: float, options: TranscribeOptions
) -> list[tuple[tuple[float, float], ...]]:
    """The pieces of each decoding window of one recording, in time order."""
    if total_s <= 0:
        return []
    pieces = active_pieces(probs, total_s, options)
    if not pieces:
        # no speech the VAD can see: a short file is left to Whisper's judgement
        return [((0.0, total_s),)] if total_s <= options.max_chunk_s else []
    chunk = vad.ChunkOptions(max_chunk_s=options.max_chunk_s)
    split: list[tuple[float, float]] = []
    for a, b in pieces:
        split += vad.split_long_region(a, b, probs, chunk)
    windows: list[list[tuple[float, float]]] = []
    filled = options.max_chunk_s  # start a new window at the first piece
    for a, b in split:
        if filled + (b - a) > options.max_chunk_s + 1e-6:
            windows.append([])
            filled = 0.0
        windows[-1].append((a, b))
        filled += b - a
    return [tuple(w) for w in windows]
