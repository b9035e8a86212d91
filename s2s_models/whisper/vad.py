"""Voice activity detection with Silero VAD, and planning of decoding windows.

The model is the one the ``silero-vad`` PyPI package ships, loaded from the package
files (never from a hub): its "sequence" ONNX export, which returns the streaming
model's per-frame probabilities for a whole block of frames in one ONNX Runtime
call instead of one Python call per 32 ms frame. Framing, the state machine that
turns probabilities into regions, and chunk planning are ours.

(The package also ships ``silero_vad_16k.safetensors``, but those weights are not
the ones behind its default JIT/ONNX models: probabilities differ by up to 0.3,
so they are not used.)

``speech_timestamps`` turns audio into speech regions ``[(start_s, end_s), ...]``;
:mod:`s2s_models.whisper.windows` plans decoding windows from the probabilities.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2s_models.audio import FlacAudio

VAD_SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # one probability per 32 ms frame
CONTEXT_SAMPLES = 64  # tail of the previous frame prepended to each frame
FRAME_S = FRAME_SAMPLES / VAD_SAMPLE_RATE
assert FRAME_S == 0.032
_MODEL_FILE = "silero_vad_16k_sequence.onnx"
MAX_BLOCK_FRAMES = 512  # frames per ONNX call (16 s): bounds transient memory


@dataclass(frozen=True)
class VadOptions:
    # speech probability at or above which a frame starts (or resumes) speech
    threshold: float = 0.5
    # probability below which a frame counts as silence; None -> threshold - 0.15
    # (at most half the threshold)
    neg_threshold: float | None = None
    # speech regions shorter than this are dropped as clicks or breaths
    min_speech_s: float = 0.25
    # a pause must last this long to end a speech region
    min_silence_s: float = 0.5
    # seconds of context kept on each side of a region (shared when regions are close)
    speech_pad_s: float = 0.2

    def verify(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not (
            0.0 < self.neg_threshold <= self.threshold
        ):
            raise ValueError("neg_threshold must be in (0, threshold]")
        for name in ("min_speech_s", "min_silence_s", "speech_pad_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def silence_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        # 0.15 below the threshold, as Silero's own utilities; half of a low one
        return max(self.threshold - 0.15, self.threshold / 2)


@dataclass(frozen=True)
class ChunkOptions:
    # longest window handed to the decoder (Whisper sees 30 s)
    max_chunk_s: float = 30.0
    # when one speech region is longer than max_chunk_s it is cut at the quietest
    # frame in the last (1 - min_fill) part of the window
    min_fill: float = 0.5

    def verify(self) -> None:
        if self.max_chunk_s <= 1.0:
            raise ValueError("max_chunk_s must be > 1 s")
        if not 0.0 < self.min_fill < 1.0:
            raise ValueError("min_fill must be in (0, 1)")


@functools.cache
def load_vad_session():
    """Open the bundled Silero VAD sequence model (cached ONNX Runtime session).

    The ``silero-vad`` package ships ``silero_vad_16k_sequence.onnx``: the same
    network as its streaming model (bit-exact probabilities), exported to take a
    whole block of frames and the LSTM state ``(h, c)`` in one call. Inputs:
    ``input`` (n_frames, 576), ``h`` and ``c`` (1, 1, 128); outputs
    ``speech_probs`` (n_frames, 1), ``hn``, ``cn``.
    """
    import onnxruntime  # lazy: only VAD needs it

    options = onnxruntime.SessionOptions()
    # a 300k-parameter model: one thread is as fast and leaves the cores to Whisper
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(vad_model_path()), sess_options=options,
        providers=["CPUExecutionProvider"],
    )  # fmt: skip


def vad_model_path() -> Path:
    """The ONNX file inside the installed ``silero-vad`` package, found without
    importing the package: importing ``silero_vad`` runs ``torch.set_num_threads(1)``
    (in its ``model.py``), which would leave every later torch op in the process,
    Whisper's included, on one core."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the VAD needs the silero-vad package")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: silero-vad installed without its model")
    return path


def frame_audio(audio: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """Cut 16 kHz audio into (n_frames, 576) frames with 64 samples of left context.

    The last frame is zero-padded; the first frame's context is ``context`` (the
    last 64 samples before ``audio``, when it continues a longer signal) or zeros.
    """
    n_frames = -(-len(audio) // FRAME_SAMPLES)
    body = np.zeros(n_frames * FRAME_SAMPLES, dtype=np.float32)
    body[: len(audio)] = audio
    frames = np.zeros((n_frames, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
    frames[:, CONTEXT_SAMPLES:] = body.reshape(n_frames, FRAME_SAMPLES)
    frames[1:, :CONTEXT_SAMPLES] = frames[:-1, -CONTEXT_SAMPLES:]
    if context is not None and n_frames:
        frames[0, :CONTEXT_SAMPLES] = context
    return frames


def speech_probabilities(audio_16k: np.ndarray) -> np.ndarray:
    """Per-frame speech probabilities, (n_frames,) float32, one per 32 ms frame.

    The audio is framed and scored ``MAX_BLOCK_FRAMES`` frames (16 s) at a time,
    with the model's state and each block's last 64 samples carried into the next,
    so an hour-long recording (or a ``FlacAudio``) never needs a framed copy of
    itself.
    """
    if not isinstance(audio_16k, FlacAudio):
        audio_16k = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
    n = len(audio_16k)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    session = load_vad_session()
    h = np.zeros((1, 1, 128), dtype=np.float32)  # LSTM state carried across blocks
    c = np.zeros((1, 1, 128), dtype=np.float32)
    context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
    block_samples = MAX_BLOCK_FRAMES * FRAME_SAMPLES
    probs = []
    for start in range(0, n, block_samples):
        chunk = np.asarray(audio_16k[start : start + block_samples], dtype=np.float32)
        frames = frame_audio(chunk, context)  # (<= MAX_BLOCK_FRAMES, 576)
        context = frames[-1, -CONTEXT_SAMPLES:].copy()
        p, h, c = session.run(
            ["speech_probs", "hn", "cn"], {"input": frames, "h": h, "c": c}
        )
        probs.append(p.reshape(-1))
    return np.concatenate(probs)


def probabilities_to_timestamps(
    probs: np.ndarray, total_s: float, options: VadOptions
) -> list[tuple[float, float]]:
    """Hysteresis over frame probabilities -> padded speech regions in seconds."""
    regions: list[list[float]] = []
    start: float | None = None  # start of the open region
    pause_from: float | None = None  # where the current pause began
    for i, p in enumerate(probs):
        t = i * FRAME_S
        if p >= options.threshold:
            pause_from = None
            if start is None:
                start = t
        elif start is not None and p < options.silence_threshold:
            pause_from = t if pause_from is None else pause_from
            if t + FRAME_S - pause_from >= options.min_silence_s:
                regions.append([start, pause_from])
                start = pause_from = None
    if start is not None:
        regions.append([start, total_s if pause_from is None else pause_from])
    regions = [r for r in regions if r[1] - r[0] >= options.min_speech_s]
    return _pad_regions(regions, total_s, options.speech_pad_s)


def _pad_regions(
    regions: list[list[float]], total_s: float, pad_s: float
) -> list[tuple[float, float]]:
    """Widen regions by pad_s each side; neighbours closer than 2 pads split the gap."""
    # room on each side: half the gap to a neighbour, the whole gap at the file edges
    edges = [0.0] + [t for r in regions for t in r] + [total_s]
    gaps = [b - a for a, b in zip(edges[0::2], edges[1::2], strict=True)]
    n = len(regions)
    padded = []
    for i, (start, end) in enumerate(regions):
        room_before = gaps[i] if i == 0 else gaps[i] / 2
        room_after = gaps[i + 1] if i == n - 1 else gaps[i + 1] / 2
        padded.append(
            (
                round(max(0.0, start - min(pad_s, room_before)), 3),
                round(min(total_s, end + min(pad_s, room_after)), 3),
            )
        )
    return padded


def speech_timestamps(
    audio_16k: np.ndarray,
    threshold: float = 0.5,
    min_silence_s: float = 0.5,
    speech_pad_s: float = 0.2,
    options: VadOptions | None = None,
) -> list[tuple[float, float]]:
    """Find speech regions in 16 kHz mono audio.

    Parameters
    ----------
    audio_16k : np.ndarray
        (n_samples,) float32 audio at 16 kHz.
    threshold, min_silence_s, speech_pad_s
        Shortcuts for the matching ``VadOptions`` fields; ignored when ``options``
        is given.
    options : VadOptions, optional
        Full set of options.

    Returns
    -------
    list of (start_s, end_s)
        Sorted, non-overlapping speech regions, padded by ``speech_pad_s``.
    """
    if options is None:
        options = VadOptions(
            threshold=threshold, min_silence_s=min_silence_s, speech_pad_s=speech_pad_s
        )
    options.verify()
    total_s = len(audio_16k) / VAD_SAMPLE_RATE
    probs = speech_probabilities(audio_16k)
    return probabilities_to_timestamps(probs, total_s, options)


def split_long_region(
    start: float, end: float, scores: np.ndarray | None, options: ChunkOptions
) -> list[tuple[float, float]]:
    """Cut one region into pieces of at most ``max_chunk_s``, each cut at the
    lowest-scoring frame (e.g. speech probability) of the last ``1 - min_fill`` of
    its piece; without scores, into equal parts."""
    pieces = []
    max_s = options.max_chunk_s
    while end - start > max_s + 1e-6:  # tolerance: times are sums of floats
        if scores is None or len(scores) == 0:
            n_parts = int(np.ceil((end - start) / max_s))
            cut = start + (end - start) / n_parts
        else:
            # candidate frames whose start lies in [start + min_fill*max, start + max)
            lo = int(np.ceil((start + options.min_fill * max_s) / FRAME_S))
            hi = int(np.floor((start + max_s) / FRAME_S))
            window = scores[lo:hi]
            if len(window) == 0:
                cut = start + max_s
            else:
                cut = (lo + int(np.argmin(window))) * FRAME_S
        cut = min(max(cut, start + FRAME_S), start + max_s)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces
