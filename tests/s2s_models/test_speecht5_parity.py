"""Parity of our SpeechT5 TTS with Hugging Face transformers on tiny random models.

Prenet dropout: transformers draws its "consistent" mask with
``torch.bernoulli(x, p)``, which *keeps* a unit with probability p, and always draws.
Setting ``speech_decoder_prenet_dropout=0.0`` therefore zeroes the whole prenet rather
than disabling it. We patch its ``_consistent_dropout`` instead: to the identity for
the dropout-free comparisons, and to "multiply by our masks" for the dropout-on one.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
hf_speecht5 = pytest.importorskip("transformers.models.speecht5.modeling_speecht5")

from s2s_models.speecht5 import (  # noqa: E402
    GenerationOptions,
    generate_speech,
    load_hf_speecht5,
    load_speecht5,
)
from s2s_models.speecht5.checkpoints import (  # noqa: E402
    convert_hf_state_dict,
    dims_from_hf_config,
)

pytestmark = pytest.mark.parity
OFF = GenerationOptions(prenet_dropout=False)


def tiny_hf_config(**overrides):
    sizes = dict(
        hidden_size=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        speech_decoder_prenet_units=16,
        speech_decoder_postnet_units=16,
        speaker_embedding_dim=8,
        encoder_max_relative_position=8,
        max_speech_positions=300,  # keeps the tables small
    )
    sizes.update(overrides)
    return transformers.SpeechT5Config(**sizes)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(HF model, our model loaded from its save_pretrained folder, folder)."""
    torch.manual_seed(0)
    hf = transformers.SpeechT5ForTextToSpeech(tiny_hf_config()).eval()
    with torch.no_grad():
        for norm in hf.modules():
            if isinstance(norm, torch.nn.BatchNorm1d):
                norm.running_mean.normal_()
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.normal_()
                norm.bias.normal_()
        for pos in (hf.speecht5.encoder.prenet, hf.speecht5.decoder.prenet):
            pos.encode_positions.alpha.fill_(0.7)
        # stop head: with these weights random texts stop after 7 to 30 steps
        prob_out = hf.speech_decoder_postnet.prob_out
        gen = torch.Generator().manual_seed(1)
        prob_out.weight.copy_(torch.randn(prob_out.weight.shape, generator=gen))
        prob_out.bias.fill_(-7.0)
    folder = tmp_path_factory.mktemp("speecht5_tiny")
    hf.save_pretrained(folder)
    return hf, load_hf_speecht5(folder), folder


@pytest.fixture
def no_hf_dropout(monkeypatch):
    monkeypatch.setattr(
        hf_speecht5.SpeechT5SpeechDecoderPrenet,
        "_consistent_dropout",
        lambda self, x, p: x,
    )


def random_inputs(lengths, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.ones(len(lengths), max(lengths), dtype=torch.long)  # <pad> = 1
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(4, 79, (n,), generator=gen)
        ids[i, n - 1] = 2  # </s>
        mask[i, :n] = 1
    speaker = torch.randn(len(lengths), 8, generator=gen)
    return ids, mask, speaker


def test_dims_from_config(pair):
    hf, ours, _ = pair
    dims = dims_from_hf_config(hf.config.to_dict())
    assert dims == ours.dims
    assert (dims.n_state, dims.n_text_layer, dims.n_speaker) == (32, 2, 8)


@torch.no_grad()
def test_encoder_and_teacher_forced_decoder_match(pair, no_hf_dropout):
    hf, ours, _ = pair
    ids, mask, speaker = random_inputs([13, 7, 10], seed=0)
    frames = torch.randn(3, 9, 80)
    ref_enc = hf.speecht5.encoder(input_values=ids, attention_mask=mask)
    enc = ours.text_encoder(ids, mask)
    real = mask.bool()
    assert (ref_enc.last_hidden_state - enc)[real].abs().max() <= 1e-5

    ref = hf(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_values=frames,
        speaker_embeddings=speaker,
        output_attentions=True,
        use_cache=False,
    )
    out = ours(ids, mask, frames, speaker)
    assert (ref.spectrogram - out.mels).abs().max() <= 1e-4
    for ref_w, w in zip(ref.cross_attentions, out.cross_attentions, strict=True):
        assert (ref_w - w).abs().max() <= 1e-5
    ref_hidden = hf.speecht5(
        input_values=ids,
        attention_mask=mask,
        decoder_input_values=frames,
        speaker_embeddings=speaker,
        use_cache=False,
    ).last_hidden_state
    _, ref_stop = hf.speech_decoder_postnet(ref_hidden)[1:]
    assert (ref_stop - out.stop_logits).abs().max() <= 1e-4


@torch.no_grad()
@pytest.mark.parametrize("seed", range(5))
def test_single_generation_matches(pair, no_hf_dropout, seed):
    hf, ours, _ = pair
    n = 5 + 4 * seed
    ids, _, speaker = random_inputs([n], seed=seed)
    ref_mel, ref_cross = hf.generate(
        ids, speaker_embeddings=speaker, output_cross_attentions=True
    )
    out = generate_speech(
        ours,
        ids,
        None,
        speaker,
        GenerationOptions(prenet_dropout=False, return_cross_attentions=True),
    )
    assert out.mels[0].shape == ref_mel.shape  # same stop step
    assert out.stopped == [True] and out.lengths[0] >= 10  # a real stop, not step 1
    assert (out.mels[0] - ref_mel).abs().max() <= 1e-4
    # HF: (n_layer * batch, n_head, n_steps, n_text) for batch 1
    assert (out.cross_attentions[0] - ref_cross).abs().max() <= 1e-5


@torch.no_grad()
def test_batch_generation_matches_items_and_reference(pair, no_hf_dropout):
    hf, ours, _ = pair
    lengths = [21, 6, 14, 9]
    ids, mask, speaker = random_inputs(lengths, seed=42)
    ref_mels, ref_lengths = hf.generate(
        ids, attention_mask=mask, speaker_embeddings=speaker, return_output_lengths=True
    )
    out = generate_speech(ours, ids, mask, speaker, OFF)
    assert out.lengths == list(ref_lengths)
    assert all(out.stopped)
    assert len(set(out.lengths)) >= 3
    for i, n in enumerate(lengths):
        assert (out.mels[i] - ref_mels[i, : out.lengths[i]]).abs().max() <= 1e-4
        # each item stops where it stops alone (alone == HF alone: test above)
        alone = generate_speech(ours, ids[i : i + 1, :n], None, speaker[i : i + 1], OFF)
        assert alone.lengths == [out.lengths[i]]
        assert (alone.mels[0] - out.mels[i]).abs().max() <= 1e-4


@torch.no_grad()
def test_generation_with_prenet_dropout_matches_given_same_masks(pair, monkeypatch):
    hf, ours, _ = pair
    ids, _, speaker = random_inputs([12], seed=3)
    options = GenerationOptions(seed=5)
    gen = torch.Generator().manual_seed(options.seed)
    masks = ours.draw_prenet_masks(ours.dims.max_speech_positions, gen)
    calls = []

    def our_masks(self, x, p):  # HF calls it once per prenet layer, on all frames
        layer = len(calls) % len(masks)
        calls.append(layer)
        return x * masks[layer][: x.shape[1]]

    monkeypatch.setattr(
        hf_speecht5.SpeechT5SpeechDecoderPrenet, "_consistent_dropout", our_masks
    )
    ref = hf.generate(ids, speaker_embeddings=speaker)
    out = generate_speech(ours, ids, None, speaker, options)
    assert out.mels[0].shape == ref.shape
    assert (out.mels[0] - ref).abs().max() <= 1e-4


def test_pytorch_bin_layout_and_strict_key_checks(pair, tmp_path):
    hf, ours, folder = pair
    state = hf.state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    loaded = load_speecht5(tmp_path)  # dispatches on model_type, reads the .bin
    for key, value in ours.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

    # older exports store the sinusoid tables: checked against ours, then dropped
    with_table = dict(state)
    table = ours.speech_decoder.prenet.positions
    with_table["speecht5.decoder.prenet.encode_positions.pe"] = table[None].clone()
    convert_hf_state_dict(with_table, ours)
    with_table["speecht5.decoder.prenet.encode_positions.pe"] = table[None] + 1.0
    with pytest.raises(ValueError, match="sinusoid"):
        convert_hf_state_dict(with_table, ours)

    missing = {k: v for k, v in state.items() if "prob_out.bias" not in k}
    with pytest.raises(KeyError, match="lacks 1"):
        convert_hf_state_dict(missing, ours)
    extra = dict(state, **{"speecht5.encoder.prenet.extra.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="unexpected"):
        convert_hf_state_dict(extra, ours)
    wrong = dict(state)
    wrong["speech_decoder_postnet.feat_out.bias"] = torch.zeros(7)
    with pytest.raises(ValueError, match="shape"):
        convert_hf_state_dict(wrong, ours)
