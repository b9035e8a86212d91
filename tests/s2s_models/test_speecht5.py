"""SpeechT5 TTS mechanics on tiny random models: KV cache, batching, seeding, limits,
checkpoints. No reference implementation needed (see test_speecht5_parity.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from s2s_models.speecht5 import (
    GenerationOptions,
    KVCache,
    SpeechT5Dims,
    SpeechT5TTS,
    generate_speech,
    load_speecht5,
    save_speecht5,
)
from s2s_models.speecht5.generation import generate_speech_checked, step_limits

TINY = SpeechT5Dims(
    n_state=32,
    n_text_layer=2,
    n_text_head=2,
    n_text_ffn=64,
    n_speech_layer=2,
    n_speech_head=2,
    n_speech_ffn=64,
    n_prenet_units=16,
    n_postnet_units=16,
    n_speaker=8,
    max_relative_position=8,
    max_speech_positions=200,
)


def tiny_model(seed: int = 0, stop_bias: float = -5.0) -> SpeechT5TTS:
    """Random tiny model; weights N(0, 0.1), biases 0, random batch-norm statistics."""
    torch.manual_seed(seed)
    model = SpeechT5TTS(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.1)
            elif name.endswith("bias"):
                p.zero_()
        for norm in model.postnet.norms:
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
        model.prob_out.weight.normal_(0.0, 1.0)
        model.prob_out.bias.fill_(stop_bias)
    return model.eval()


BATCH_LENGTHS = [17, 5, 11, 23, 8]


@pytest.fixture(scope="module")
def stopping_model() -> SpeechT5TTS:
    """A tiny model whose stop head ends the items of BATCH_LENGTHS at >= 3 different
    steps, all before 40. Random weights rarely do, so try a few (seed, bias) pairs:
    the stop logits are (weights . state + bias), so the bias moves the stop step."""
    ids, mask = random_batch(BATCH_LENGTHS, seed=1)
    opts = GenerationOptions(prenet_dropout=False, maxlenratio=80 / 23)
    for seed in range(6):
        for bias in (-5.0, -5.5, -6.0, -6.5):
            model = tiny_model(seed, bias)
            out = generate_speech(model, ids, mask, None, opts)
            if all(out.stopped) and len(set(out.lengths)) >= 3:
                return model
    raise AssertionError("no tiny model with varied stop steps found")


def random_batch(
    lengths: list[int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), TINY.pad_token_id)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(4, 79, (n,), generator=gen)
        ids[i, n - 1] = TINY.eos_token_id
        mask[i, :n] = 1
    return ids, mask


@torch.no_grad()
def test_cached_decoding_matches_full_pass_with_dropout_masks():
    model = tiny_model()
    ids, mask = random_batch([9, 6])
    speaker = torch.randn(2, TINY.n_speaker)
    frames = torch.randn(2, 12, TINY.n_mels)  # decoder inputs, teacher-forced
    masks = model.draw_prenet_masks(
        TINY.max_speech_positions, torch.Generator().manual_seed(3)
    )
    full = model(ids, mask, frames, speaker, masks)

    memory = model.text_encoder(ids, mask)
    cache = KVCache.empty(TINY.n_speech_layer)
    hidden, cross = [], []
    for t in range(frames.shape[1]):
        h, w = model.speech_decoder(
            frames[:, t : t + 1], memory, mask, speaker, cache, masks
        )
        hidden.append(h)
        cross.append(w[-1])
    assert cache.n_past == frames.shape[1]
    assert cache.cross_kv[0][0].shape == (2, TINY.n_speech_head, 9, 16)
    mels_before, stop_logits = model.project(torch.cat(hidden, dim=1))
    assert torch.allclose(mels_before, full.mels_before_postnet, atol=1e-5)
    assert torch.allclose(stop_logits, full.stop_logits, atol=1e-5)
    assert torch.allclose(torch.cat(cross, dim=2), full.cross_attentions[-1], atol=1e-6)
    # padded text positions get no cross-attention
    assert full.cross_attentions[-1][1, :, :, 6:].abs().max() == 0


@torch.no_grad()
def test_prenet_dropout_changes_output_and_is_seeded():
    model = tiny_model()
    ids, mask = random_batch([10])
    speaker = torch.randn(1, TINY.n_speaker)
    opts = GenerationOptions(seed=7, maxlenratio=2.0, threshold=10.0)
    a = generate_speech(model, ids, mask, speaker, opts)
    b = generate_speech(model, ids, mask, speaker, opts)
    c = generate_speech(model, ids, mask, speaker, dataclasses.replace(opts, seed=8))
    off = generate_speech(
        model, ids, mask, speaker, dataclasses.replace(opts, prenet_dropout=False)
    )
    assert torch.equal(a.mels[0], b.mels[0])
    assert not torch.allclose(a.mels[0], c.mels[0])
    assert not torch.allclose(a.mels[0], off.mels[0])


@torch.no_grad()
@pytest.mark.parametrize("prenet_dropout", [False, True])
def test_batch_items_stop_where_they_stop_alone(stopping_model, prenet_dropout):
    model, lengths = stopping_model, BATCH_LENGTHS
    ids, mask = random_batch(lengths, seed=1)
    opts = GenerationOptions(
        prenet_dropout=prenet_dropout, seed=11, return_cross_attentions=True
    )
    batch = generate_speech(model, ids, mask, None, opts)
    alone = [
        generate_speech(model, ids[i : i + 1, :n], None, None, opts)
        for i, n in enumerate(lengths)
    ]
    assert batch.lengths == [a.lengths[0] for a in alone]
    assert batch.stopped == [a.stopped[0] for a in alone]
    if not prenet_dropout:  # what the fixture selected for
        assert all(batch.stopped) and len(set(batch.lengths)) >= 3
    for i, single in enumerate(alone):
        assert (batch.mels[i] - single.mels[0]).abs().max() < 1e-4
        n_steps = batch.lengths[i] // TINY.reduction_factor
        assert batch.cross_attentions[i].shape == (2, 2, n_steps, lengths[i])
        assert torch.allclose(
            batch.cross_attentions[i], single.cross_attentions[0], atol=1e-5
        )
    padded, lens = batch.padded()
    assert padded.shape == (5, max(batch.lengths), TINY.n_mels)
    assert lens.tolist() == batch.lengths


@torch.no_grad()
def test_preallocated_cache_equals_growing_cache(stopping_model):
    """Same mels, stops and attention with the self-attention K/V written in place
    (rows compacted as utterances finish) as with K/V concatenated every step."""
    ids, mask = random_batch(BATCH_LENGTHS, seed=1)
    opts = GenerationOptions(prenet_dropout=True, seed=3, return_cross_attentions=True)
    fixed = generate_speech(stopping_model, ids, mask, None, opts)
    grown = generate_speech(
        stopping_model, ids, mask, None,
        dataclasses.replace(opts, preallocate_cache=False),
    )  # fmt: skip
    assert fixed.lengths == grown.lengths and fixed.stopped == grown.stopped
    assert len(set(fixed.lengths)) >= 2  # rows left the batch along the way
    for a, b in zip(fixed.mels + fixed.cross_attentions,
                    grown.mels + grown.cross_attentions, strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@torch.no_grad()
def test_step_limits_and_stopped_flag():
    model = tiny_model(stop_bias=-50.0)  # never stops by itself
    ids, mask = random_batch([7, 12])
    opts = GenerationOptions(maxlenratio=3.0, prenet_dropout=False)
    out = generate_speech(model, ids, mask, None, opts)
    assert out.stopped == [False, False]
    r = TINY.reduction_factor
    assert out.lengths == [int(7 * 3.0 / r) * r, int(12 * 3.0 / r) * r]

    eager = tiny_model(stop_bias=50.0)  # wants to stop at once
    opts = GenerationOptions(minlenratio=1.0, prenet_dropout=False)
    out = generate_speech(eager, ids, mask, None, opts)
    assert out.stopped == [True, True]
    assert out.lengths == [int(7 * 1.0 / r) * r, int(12 * 1.0 / r) * r]

    lo, hi = step_limits([1, 10_000], GenerationOptions(), r, TINY.max_speech_positions)
    assert hi == [10, TINY.max_speech_positions] and lo == [0, 0]


@torch.no_grad()
def test_postnet_lengths_make_padding_irrelevant():
    model = tiny_model()
    mels = torch.randn(2, 14, TINY.n_mels)
    lengths = torch.tensor([14, 9])
    batched = model.postnet(mels, lengths)
    alone = model.postnet(mels[1:, :9])
    assert torch.allclose(batched[1, :9], alone[0], atol=1e-6)
    unmasked = model.postnet(mels)
    assert not torch.allclose(unmasked[1, :9], alone[0], atol=1e-3)


def test_options_and_dims_verify():
    with pytest.raises(ValueError):
        GenerationOptions(threshold=0.0).verify()
    with pytest.raises(ValueError):
        GenerationOptions(maxlenratio=0.0).verify()
    with pytest.raises(ValueError):
        SpeechT5Dims(n_state=30, n_text_head=4).verify()
    with pytest.raises(ValueError):
        SpeechT5TTS(dataclasses.replace(TINY, activation="swish"))


@torch.no_grad()
def test_save_and_load_roundtrip(tmp_path):
    model = tiny_model(seed=4)
    save_speecht5(model, tmp_path / "voice")
    loaded = load_speecht5(tmp_path / "voice")
    assert loaded.dims == model.dims
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    ids, mask = random_batch([9])
    opts = GenerationOptions(seed=1, maxlenratio=2.0)
    assert torch.equal(
        generate_speech(model, ids, mask, None, opts).mels[0],
        generate_speech(loaded, ids, mask, None, opts).mels[0],
    )


def test_load_rejects_foreign_or_damaged_checkpoints(tmp_path):
    from safetensors.torch import load_file, save_file

    save_speecht5(tiny_model(), tmp_path / "voice")
    weights = tmp_path / "voice" / "model.safetensors"
    state = load_file(weights)
    state["feat_out.bias"] = torch.zeros(3)
    save_file(state, weights)
    with pytest.raises(ValueError, match="feat_out.bias"):
        load_speecht5(tmp_path / "voice")
    del state["feat_out.bias"]
    save_file(state, weights)
    with pytest.raises(KeyError):
        load_speecht5(tmp_path / "voice")
    (tmp_path / "voice" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a SpeechT5"):
        load_speecht5(tmp_path / "voice")


def test_checked_generation_retries_and_flags_cut_short(stopping_model):
    """An utterance that stops before its min_frames is tried again with other seeds;
    the longest try is kept, and cut_short says whether every try was short."""
    ids, mask = random_batch(BATCH_LENGTHS, seed=1)
    opts = GenerationOptions(seed=3, maxlenratio=80 / 23)
    plain = generate_speech(stopping_model, ids, mask, None, opts)
    # no minimum: nothing is retried, the result is generate_speech's
    same = generate_speech_checked(stopping_model, ids, mask, None, opts, [0] * 5)
    assert same.lengths == plain.lengths and same.cut_short == [False] * 5
    # a minimum no try can reach: every stopped item is retried and flagged
    tall = [10_000] * 5
    out = generate_speech_checked(stopping_model, ids, mask, None, opts, tall)
    assert out.cut_short == plain.stopped
    assert all(a >= b for a, b in zip(out.lengths, plain.lengths, strict=True))
    # the first item alone needs more than its first try gave: only it is retried
    need = [plain.lengths[0] + 1] + [0] * 4
    one = generate_speech_checked(stopping_model, ids, mask, None, opts, need)
    assert one.lengths[1:] == plain.lengths[1:] and one.cut_short[1:] == [False] * 4
    assert one.cut_short[0] == (one.lengths[0] < need[0])
