"""Log-mel features: constants, filterbank, parity with the Hugging Face extractor."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s2s_models.audio import (
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    FlacAudio,
    log_mel_spectrogram,
    log_mel_spectrogram_blockwise,
    mel_filters,
    pad_or_trim,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "whisper"


def _speech() -> np.ndarray:
    audio, rate = sf.read(
        FIXTURES / "librispeech_2412-153948-0000.flac", dtype="float32"
    )
    assert rate == SAMPLE_RATE
    return audio


def test_constants_are_consistent():
    assert (SAMPLE_RATE, N_FFT, HOP_LENGTH) == (16000, 400, 160)
    assert N_SAMPLES == 30 * SAMPLE_RATE
    assert N_FRAMES == N_SAMPLES // HOP_LENGTH == 3000


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_shape_and_slaney_normalisation(n_mels):
    filters = mel_filters(n_mels)
    assert filters.shape == (n_mels, N_FFT // 2 + 1)
    assert filters.dtype == torch.float32
    assert (filters >= 0).all()
    assert (filters.sum(dim=1) > 0).all()  # no empty filter
    # Slaney normalisation: filter heights 2 / bandwidth, so higher bands are lower.
    assert filters.amax(dim=1)[-1] < filters.amax(dim=1)[n_mels // 4]
    assert mel_filters(n_mels) is filters  # cached


def test_mel_filters_rejects_other_sizes():
    with pytest.raises(ValueError):
        mel_filters(64)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_transformers(n_mels):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    reference = audio_utils.mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )  # (n_bins, n_mels)
    np.testing.assert_allclose(mel_filters(n_mels).numpy(), reference.T, atol=1e-7)


def test_log_mel_matches_whisper_feature_extractor():
    transformers = pytest.importorskip("transformers")
    audio = _speech()
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    reference = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")
    reference = reference.input_features[0]  # (80, 3000)
    ours = pad_or_trim(log_mel_spectrogram(audio, padding=N_SAMPLES), N_FRAMES)
    assert ours.shape == (80, N_FRAMES)
    assert np.abs(ours.numpy() - reference).max() <= 1e-4


def test_padding_the_audio_two_ways_agrees():
    audio = torch.from_numpy(_speech())
    padded_audio = log_mel_spectrogram(pad_or_trim(audio, N_SAMPLES))
    padded_stft = pad_or_trim(log_mel_spectrogram(audio, padding=N_SAMPLES))
    assert padded_audio.shape == padded_stft.shape == (80, N_FRAMES)
    assert torch.allclose(padded_audio, padded_stft, atol=1e-5)


def test_batch_is_normalised_per_item():
    speech = torch.from_numpy(_speech()[: 4 * SAMPLE_RATE])
    quiet = 0.1 * speech.flip(0)
    batch = torch.stack([speech, quiet])  # (2, n_samples)
    mel = log_mel_spectrogram(batch, n_mels=128)
    assert mel.shape == (2, 128, speech.shape[0] // HOP_LENGTH)
    for i, item in enumerate((speech, quiet)):
        assert torch.allclose(mel[i], log_mel_spectrogram(item, n_mels=128), atol=1e-5)
    # Each item's floor is 8 log10 units (2 after scaling) below its own peak.
    peaks, floors = mel.amax(dim=(1, 2)), mel.amin(dim=(1, 2))
    assert torch.allclose(floors, peaks - 2.0, atol=1e-5)
    assert abs(peaks[0] - peaks[1] - 0.5) < 0.01  # 20 dB = 2 log10 units / 4


def test_log_mel_range_and_numpy_input():
    mel = log_mel_spectrogram(_speech())
    assert mel.dtype == torch.float32
    assert mel.max() - mel.min() <= 2.0 + 1e-6  # 8 log10 units / 4
    silence = log_mel_spectrogram(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert torch.allclose(silence, torch.full_like(silence, (-10 + 4) / 4))


def test_pad_or_trim_torch_and_numpy():
    x = torch.arange(10.0).reshape(2, 5)
    assert pad_or_trim(x, 3).tolist() == [[0, 1, 2], [5, 6, 7]]
    assert pad_or_trim(x, 7)[:, 5:].abs().sum() == 0
    assert pad_or_trim(x, 4, axis=0).shape == (4, 5)
    y = np.arange(10.0).reshape(2, 5)
    assert pad_or_trim(y, 3).tolist() == [[0, 1, 2], [5, 6, 7]]
    assert pad_or_trim(y, 6, axis=-1).shape == (2, 6)
    assert pad_or_trim(y, 2, axis=0) is y


@pytest.mark.parametrize("block_frames", [1, 7, 3000])
def test_blockwise_log_mel_equals_the_one_shot_function(block_frames):
    speech = _speech()
    # both edges of the file fall inside blocks of every size tried here
    for audio in (speech, speech[: N_FFT + 5], speech[: 7 * HOP_LENGTH + 3]):
        full = log_mel_spectrogram(torch.from_numpy(audio))
        blocks = log_mel_spectrogram_blockwise(audio, block_frames=block_frames)
        assert blocks.shape == full.shape == (80, audio.size // HOP_LENGTH)
        assert torch.allclose(blocks, full, atol=1e-6, rtol=0)


def test_flac_audio_slices_and_blockwise_log_mel():
    path = FIXTURES / "librispeech_2412-153948-0000.flac"
    audio = FlacAudio(path.read_bytes())
    whole = _speech()
    assert len(audio) == audio.size == whole.size and audio.shape == whole.shape
    for a, b in ((0, 10), (1000, 21000), (whole.size - 100, whole.size + 5), (7, 7)):
        np.testing.assert_array_equal(audio[a:b], whole[a:b])
    np.testing.assert_array_equal(audio[-160:], whole[-160:])
    np.testing.assert_array_equal(np.asarray(audio), whole)
    with pytest.raises(TypeError):
        audio[5]
    with pytest.raises(ValueError):
        audio[::2]
    lazy = log_mel_spectrogram_blockwise(audio, block_frames=700)
    assert torch.equal(lazy, log_mel_spectrogram_blockwise(whole, block_frames=700))
