"""Whisper architecture mechanics on a tiny random model."""

import dataclasses

import pytest
import torch

from s2s_models.whisper.model import KVCache, Whisper, WhisperDims, sinusoids

TINY = WhisperDims(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=32,
    n_audio_head=4,
    n_audio_layer=2,
    n_vocab=300,
    n_text_ctx=24,
    n_text_state=32,
    n_text_head=4,
    n_text_layer=2,
)


@pytest.fixture(scope="module")
def model() -> Whisper:
    torch.manual_seed(0)
    model = Whisper(TINY).eval()
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def features(model) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.inference_mode():
        return model.embed_audio(torch.randn(3, 80, 3000))


def test_shapes_and_properties(model, features):
    assert features.shape == (3, 1500, 32)
    tokens = torch.randint(0, 300, (3, 5))
    with torch.inference_mode():
        logits = model.logits(tokens, features)
    assert logits.shape == (3, 5, 300) and logits.dtype == torch.float32
    assert model.device.type == "cpu" and model.dtype == torch.float32
    assert not model.is_multilingual
    assert model.dims is TINY


def test_language_count_follows_vocab():
    small = dataclasses.replace(TINY, n_text_layer=1, n_audio_layer=1)
    assert Whisper(dataclasses.replace(small, n_vocab=51864)).num_languages == 99
    base = Whisper(dataclasses.replace(small, n_vocab=51865))
    assert base.is_multilingual and base.num_languages == 99
    large_v3 = Whisper(dataclasses.replace(small, n_vocab=51866))
    assert large_v3.num_languages == 100


def test_dims_verify():
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, n_audio_head=5).verify()
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, n_text_state=64).verify()
    with pytest.raises(ValueError):
        Whisper(dataclasses.replace(TINY, n_vocab=0))


def test_encoder_rejects_wrong_frame_count(model):
    with pytest.raises(ValueError, match="3000 mel frames"):
        model.embed_audio(torch.randn(1, 80, 2000))


def test_sinusoids_layout():
    table = sinusoids(10, 8)
    assert table.shape == (10, 8)
    assert torch.allclose(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_cached_logits_match_uncached(model, features):
    torch.manual_seed(2)
    tokens = torch.randint(0, 300, (3, 12))
    with torch.inference_mode():
        full = model.logits(tokens, features)  # (3, 12, 300)
        cache = KVCache()
        steps = [model.logits(tokens[:, :4], features, cache)]  # a 4-token prefix
        for t in range(4, 9):
            steps.append(model.logits(tokens[:, t : t + 1], features, cache))
        steps.append(model.logits(tokens[:, 9:], features, cache))  # a 3-token chunk
    cached = torch.cat(steps, dim=1)
    assert cache.n_tokens == 12
    assert (cached - full).abs().max() < 1e-4


def test_positions_select_logits(model, features):
    tokens = torch.randint(0, 300, (3, 6))
    with torch.inference_mode():
        full = model.logits(tokens, features)
        picked = model.logits(tokens, features, positions=[0, -1])
    assert torch.allclose(picked, full[:, [0, -1]], atol=1e-5)


def test_reorder_drops_and_permutes_rows(model, features):
    tokens = torch.randint(0, 300, (3, 7))
    with torch.inference_mode():
        full = model.logits(tokens, features)
        cache = KVCache()
        model.logits(tokens[:, :6], features, cache)
        keep = torch.tensor([2, 0])
        cache.reorder(keep)
        last = model.logits(tokens[keep, 6:], features[keep], cache)
    assert (last[:, 0] - full[keep, 6]).abs().max() < 1e-4


def test_cross_group_shares_audio_rows(model, features):
    """Beam-style grouping: rows 2j, 2j+1 attend to audio row j."""
    tokens = torch.randint(0, 300, (6, 5))
    spread = torch.tensor([0, 0, 1, 1, 2, 2])
    with torch.inference_mode():
        expected = model.logits(tokens, features[spread])
        cache = KVCache(cross_group=2)
        grouped = model.logits(tokens[:, :3], features, cache)
        swap = torch.tensor([1, 0, 2, 3, 5, 4])  # move hypotheses within windows
        cache.reorder(swap, cross=False)
        step = model.logits(tokens[swap, 3:], features, cache)
    assert (grouped - expected[:, :3]).abs().max() < 1e-4
    reference = model.logits(tokens[swap], features[spread])
    assert (step - reference[:, 3:]).abs().max() < 1e-4
    with pytest.raises(ValueError, match="batch mismatch"):
        model.logits(tokens[:4], features)


def test_context_limit(model, features):
    with pytest.raises(ValueError, match="decoder context"):
        model.logits(torch.zeros(3, 25, dtype=torch.long), features)


def test_half_precision_forward(model):
    half = Whisper(TINY).to(torch.bfloat16).eval()
    half.load_state_dict(model.state_dict())
    mel = torch.randn(1, 80, 3000)
    tokens = torch.randint(0, 300, (1, 4))
    with torch.inference_mode():
        ref = model(mel, tokens)
        low = half(mel, tokens)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.25 * ref.abs().max()
