"""Whisper-compatible log-mel features in plain PyTorch.

The recipe is the one Whisper was trained on: 16 kHz mono audio, a 400-point Hann
window (25 ms) moved by 160 samples (10 ms), power spectrum, a Slaney-style mel
filterbank (80 or 128 bins), log10 clamped at 1e-10, a dynamic range of 8 (in log10
units) below the loudest bin of each item, then ``(x + 4) / 4``.

Padding: the audio or the log-mel
---------------------------------
Whisper always sees 30 s windows (3000 frames). For a clip shorter than 30 s there are
two ways to get there, and they differ:

* pad the *audio* with zeros to 30 s and compute the mel (Hugging Face
  ``WhisperFeatureExtractor``), or equivalently compute the mel over the audio
  followed by ``N_SAMPLES`` zeros and keep the first 3000 frames (openai-whisper,
  ``padding=N_SAMPLES``). The padded frames then hold the log-mel of silence,
  clamped to ``max - 8``, which is what the model saw in training;
* pad the *log-mel*: compute it over the clip (plus 160 zero samples) and append zero
  columns up to 3000 frames. This is what faster-whisper 1.x does. Zero in the
  normalised domain is ``log10 = -4``, not silence, and the last frames differ too,
  so the decoded text can change (6 of the 14 dev clips with tiny.en, mostly
  punctuation).

Both are available. Transcription (``TranscribeOptions.feature_padding``) defaults
to padding the log-mel, faster-whisper's convention: on the 14 dev clips with tiny.en
(greedy, no timestamps) it gives transcripts identical to faster-whisper's on 13 of
14 and corpus WER 6.33% (faster-whisper 6.79%), against 8 of 14 and 8.14% when the
audio is padded. ``log_mel_spectrogram(audio, padding=N_SAMPLES)`` then
``pad_or_trim(mel, N_FRAMES)`` gives the Hugging Face extractor's features to within
float rounding (the audio-padding convention); ``log_mel_spectrogram(audio,
padding=HOP_LENGTH)`` then ``pad_or_trim`` gives faster-whisper's. The sequential
long-form mode computes one mel over ``audio + N_SAMPLES zeros`` and slices 3000-frame
windows out of it, the openai convention (the ``max - 8`` floor spans the recording).
"""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000  # Hz
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop
CHUNK_LENGTH = 30  # seconds per Whisper window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples per window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's conv2 has stride 2
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 audio positions per second

assert N_SAMPLES == 480000 and N_SAMPLES % HOP_LENGTH == 0
assert N_FRAMES == 3000
assert FRAMES_PER_SECOND * HOP_LENGTH == SAMPLE_RATE

_FILTER_CACHE: dict[tuple[int, str], torch.Tensor] = {}


class FlacAudio:
    """Mono audio kept as its FLAC bytes and decoded one slice at a time.

    Long recordings are passed around in this form so that memory follows the
    compressed file (about a quarter of float32 for speech) and the slice being
    worked on, not the whole waveform. It behaves like a read-only 1-D float32
    array for ``len()``, ``.size``, ``.shape`` and ``audio[a:b]`` (a new array,
    decoded from the nearest FLAC frame); ``np.asarray(audio)`` decodes all of it.
    Functions here and in ``s2s_models.whisper`` that read audio in slices (VAD,
    VAD-window transcription, blockwise log-mel) accept it wherever they take an
    ``np.ndarray``.
    """

    ndim = 1
    dtype = np.dtype(np.float32)

    def __init__(self, data: bytes):
        self.data = data
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.channels != 1:
                raise ValueError(f"FlacAudio is mono only, got {f.channels} channels")
            self.sample_rate, self.frames = f.samplerate, f.frames

    def __len__(self) -> int:
        return self.frames

    @property
    def size(self) -> int:
        return self.frames

    @property
    def shape(self) -> tuple[int]:
        return (self.frames,)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("FlacAudio supports slices only, e.g. audio[a:b]")
        start, stop, step = key.indices(self.frames)
        if step != 1:
            raise ValueError("FlacAudio slices must be contiguous (step 1)")
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        with sf.SoundFile(io.BytesIO(self.data)) as f:
            f.seek(start)
            return f.read(stop - start, dtype="float32")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, log above (librosa with htk=False)."""
    f_sp = 200.0 / 3  # Hz per mel in the linear part
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp  # 15 mels at 1 kHz
    logstep = math.log(6.4) / 27.0
    mels = freq / f_sp
    log_part = freq >= min_log_hz
    mels[log_part] = min_log_mel + np.log(freq[log_part] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    freqs = f_sp * mels
    log_part = mels >= min_log_mel
    freqs[log_part] = min_log_hz * np.exp(logstep * (mels[log_part] - min_log_mel))
    return freqs


def _slaney_mel_filterbank(n_mels: int) -> np.ndarray:
    """Triangular filters, area-normalised, for SAMPLE_RATE and N_FFT: (n_mels, n_bins).

    Computed in float64 like librosa.filters.mel(sr=16000, n_fft=400, n_mels=n), which
    is what openai-whisper ships in mel_filters.npz.
    """
    n_bins = N_FFT // 2 + 1
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, n_bins)  # (n_bins,)
    mel_edges = np.linspace(
        _hz_to_mel(np.array([0.0]))[0],
        _hz_to_mel(np.array([SAMPLE_RATE / 2.0]))[0],
        n_mels + 2,
    )
    hz_edges = _mel_to_hz(mel_edges)  # (n_mels + 2,)
    widths = np.diff(hz_edges)  # (n_mels + 1,)
    ramps = hz_edges[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_bins)
    lower = -ramps[:-2] / widths[:-1, None]  # rising edge of each triangle
    upper = ramps[2:] / widths[1:, None]  # falling edge
    weights = np.maximum(0.0, np.minimum(lower, upper))  # (n_mels, n_bins)
    enorm = 2.0 / (hz_edges[2 : n_mels + 2] - hz_edges[:n_mels])  # equal area
    return weights * enorm[:, None]


def mel_filters(n_mels: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Slaney-style mel filterbank for 16 kHz audio and a 400-point FFT.

    Parameters
    ----------
    n_mels
        80 (Whisper up to large-v2) or 128 (large-v3).
    device
        Where the returned tensor lives; cached per ``(n_mels, device)``.

    Returns
    -------
    torch.Tensor
        ``(n_mels, N_FFT // 2 + 1)`` float32.
    """
    if n_mels not in (80, 128):
        raise ValueError(f"Whisper uses 80 or 128 mel bins, got n_mels={n_mels}")
    device = torch.device(device if device is not None else "cpu")
    key = (n_mels, str(device))
    if key not in _FILTER_CACHE:
        weights = _slaney_mel_filterbank(n_mels).astype(np.float32)
        _FILTER_CACHE[key] = torch.from_numpy(weights).to(device)
    return _FILTER_CACHE[key]


def pad_or_trim(
    array: torch.Tensor | np.ndarray, length: int = N_FRAMES, axis: int = -1
) -> torch.Tensor | np.ndarray:
    """Zero-pad or cut ``array`` along ``axis`` to exactly ``length`` entries.

    Use ``length=N_SAMPLES`` on audio and ``length=N_FRAMES`` (the default) on log-mel
    features. Returns the same type (torch or numpy) as the input.
    """
    size = array.shape[axis]
    if size > length:
        if isinstance(array, torch.Tensor):
            return array.narrow(axis, 0, length)
        return np.take(array, np.arange(length), axis=axis)
    if size < length:
        if isinstance(array, torch.Tensor):
            pad = [0, 0] * array.dim()
            # F.pad lists (before, after) pairs starting from the last dimension.
            pad[2 * (array.dim() - 1 - (axis % array.dim())) + 1] = length - size
            return F.pad(array, pad)
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - size)
        return np.pad(array, widths)
    return array


def log_mel_spectrogram(
    audio: torch.Tensor | np.ndarray,
    n_mels: int = 80,
    padding: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Whisper log-mel spectrogram of 16 kHz mono audio.

    Parameters
    ----------
    audio
        ``(..., n_samples)`` float waveform in [-1, 1] at 16 kHz; a batch
        ``(batch, n_samples)`` is normalised per item.
    n_mels
        Number of mel bins (80, or 128 for large-v3).
    padding
        Zero samples appended before the STFT (``N_SAMPLES`` for the openai
        convention; see the module docstring).
    device
        Where to compute; defaults to the tensor's device (CPU for numpy input).

    Returns
    -------
    torch.Tensor
        ``(..., n_mels, n_frames)`` float32 with
        ``n_frames = (n_samples + padding) // HOP_LENGTH``.
    """
    if not isinstance(audio, torch.Tensor):
        audio = torch.from_numpy(np.ascontiguousarray(audio))
    if device is not None:
        audio = audio.to(device)
    audio = audio.float()
    if padding > 0:
        audio = F.pad(audio, (0, padding))
    lead_shape = audio.shape[:-1]
    flat = audio.reshape(-1, audio.shape[-1])  # (batch, n_samples)
    window = torch.hann_window(N_FFT, device=flat.device)
    stft = torch.stft(flat, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    # (batch, n_bins, n_frames + 1); the last frame is dropped as in Whisper training.
    power = stft[..., :-1].abs() ** 2  # (batch, n_bins, n_frames)
    mel = mel_filters(n_mels, flat.device) @ power  # (batch, n_mels, n_frames)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)  # (batch, 1, 1): per item
    log_spec = torch.maximum(log_spec, peak - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    return log_spec.reshape(*lead_shape, n_mels, log_spec.shape[-1])


def log_mel_spectrogram_blockwise(
    audio: np.ndarray,
    n_mels: int = 80,
    block_frames: int = 3000,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``log_mel_spectrogram(audio)`` of 1-D audio, computed ``block_frames`` at a time.

    The full STFT of an hour of audio takes several times the audio's own memory;
    this keeps one block's STFT (3000 frames: 5 MB) alive at a time. Each block's
    frames are cut from the same reflect-padded signal the centred STFT would see,
    so the result equals the one-shot function up to float rounding. The ``max - 8``
    floor still spans the whole recording (applied after the last block). ``audio``
    may be a :class:`FlacAudio`, then only one block is ever decoded at a time.
    Returns ``(n_mels, n_samples // HOP_LENGTH)`` float32 on the CPU.
    """
    if not isinstance(audio, FlacAudio):  # FlacAudio: decoded block by block
        audio = np.ascontiguousarray(audio, dtype=np.float32)
    assert audio.ndim == 1, "one recording at a time"
    n, half = len(audio), N_FFT // 2
    assert n > half, f"need more than {half} samples for the reflect padding"
    n_frames = n // HOP_LENGTH  # the centred STFT's 1 + n // hop, minus the last
    out = torch.empty(n_mels, n_frames)
    window = filters = None
    for f0 in range(0, n_frames, block_frames):
        f1 = min(n_frames, f0 + block_frames)
        # frame f covers padded[f*hop : f*hop + N_FFT], padded[j] = audio[j - half]
        lo, hi = f0 * HOP_LENGTH - half, (f1 - 1) * HOP_LENGTH + N_FFT - half
        seg = audio[max(lo, 0) : min(hi, n)]
        if lo < 0 or hi > n:
            seg = np.pad(seg, (max(0, -lo), max(0, hi - n)), mode="reflect")
        x = torch.from_numpy(seg).to(device or "cpu")
        if window is None:
            window = torch.hann_window(N_FFT, device=x.device)
            filters = mel_filters(n_mels, x.device)
        stft = torch.stft(
            x, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True
        )  # (n_bins, f1 - f0)
        mel = filters @ (stft.abs() ** 2)
        out[:, f0:f1] = torch.clamp(mel, min=1e-10).log10().cpu()
    if n_frames:
        torch.maximum(out, out.max() - 8.0, out=out)
    return out.add_(4.0).div_(4.0)
