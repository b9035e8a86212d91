"""HiFi-GAN generator: parity with transformers' SpeechT5HifiGan (HF layout, with input
normalisation) and, through weight-normalised tensors renamed to jik876's layout, the
original generator checkpoint format."""

from __future__ import annotations

import json

import pytest
import torch

from s2s_models.vocoders import (
    HiFiGanDims,
    HiFiGanGenerator,
    fold_weight_norm,
    load_hf_hifigan,
    load_jik876_hifigan,
)

TINY = dict(
    upsample_initial_channel=32,
    upsample_rates=[4, 4, 2],
    upsample_kernel_sizes=[8, 8, 4],
    resblock_kernel_sizes=[3, 5],
    resblock_dilation_sizes=[[1, 3, 5], [1, 2, 4]],
)


def test_shapes_and_dims():
    dims = HiFiGanDims(
        upsample_initial_channel=32,
        upsample_rates=(4, 4, 2),
        upsample_kernel_sizes=(8, 8, 4),
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3),),
        resblock="2",
    )
    assert dims.hop_length == 32
    model = HiFiGanGenerator(dims).eval()
    with torch.no_grad():
        audio = model(torch.randn(2, 7, 80))
    assert audio.shape == (2, 7 * 32)
    assert audio.abs().max() <= 1.0
    with pytest.raises(ValueError):
        HiFiGanDims(upsample_rates=(4, 4), upsample_kernel_sizes=(8,)).verify()
    with pytest.raises(ValueError):
        HiFiGanDims(resblock="3").verify()


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_fold_weight_norm_matches_torch():
    conv = torch.nn.utils.weight_norm(torch.nn.ConvTranspose1d(6, 4, 5))
    with torch.no_grad():
        conv.weight_g.uniform_(0.5, 2.0)
    conv(torch.randn(1, 6, 3))  # the hook recomputes .weight
    folded = fold_weight_norm({k: v.detach() for k, v in conv.state_dict().items()})
    assert set(folded) == {"weight", "bias"}
    assert torch.allclose(folded["weight"], conv.weight.detach(), atol=1e-6)


@pytest.fixture(scope="module")
def hf_vocoder():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.SpeechT5HifiGanConfig(**TINY)
    model = transformers.SpeechT5HifiGan(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
        model.mean.normal_(-5.0, 1.0)
        model.scale.uniform_(0.5, 2.0)
    return model


@pytest.mark.parity
@torch.no_grad()
def test_hf_layout_matches_transformers(hf_vocoder, tmp_path):
    hf_vocoder.save_pretrained(tmp_path)
    ours = load_hf_hifigan(tmp_path)
    assert ours.dims.normalize_before and ours.dims.hop_length == 32
    mels = torch.randn(3, 20, 80) - 5.0
    ref = hf_vocoder(mels)
    out = ours(mels)
    assert out.shape == ref.shape == (3, 20 * 32)
    assert (out - ref).abs().max() <= 1e-4
    assert ref.std() > 0.01 and ref.abs().max() < 0.99  # neither silent nor saturated


@pytest.mark.parity
@torch.no_grad()
def test_weight_normed_hf_bin_and_jik876_layouts(hf_vocoder, tmp_path):
    """Weight-norm the reference, then store it (a) as an HF pytorch_model.bin with
    parametrizations and (b) as a jik876 generator file with weight_g/weight_v."""
    import copy

    reference = copy.deepcopy(hf_vocoder)
    reference.apply_weight_norm()  # the parametrize API: original0 / original1
    with torch.no_grad():  # move g away from ||v|| so folding really matters
        for name, p in reference.named_parameters():
            if name.endswith("original0"):
                p.mul_(torch.empty_like(p).uniform_(0.5, 1.5))
    mels = torch.randn(2, 15, 80) - 5.0
    with torch.no_grad():
        ref = reference(mels)

    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    state = {k: v.detach().clone() for k, v in reference.state_dict().items()}
    assert any(".parametrizations.weight.original0" in k for k in state)
    torch.save(state, hf_dir / "pytorch_model.bin")
    (hf_dir / "config.json").write_text(reference.config.to_json_string())
    assert (load_hf_hifigan(hf_dir)(mels) - ref).abs().max() <= 1e-4

    jik = {}
    for key, value in state.items():
        if key in ("mean", "scale"):
            continue
        key = key.replace("upsampler.", "ups.")
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        jik[key] = value
    torch.save({"generator": jik}, tmp_path / "g_00000001")
    config = dict(TINY, resblock="1", num_mels=80, sampling_rate=16000)
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = load_jik876_hifigan(tmp_path / "g_00000001", tmp_path / "config.json")
    assert not ours.dims.normalize_before
    normalised = (mels - reference.mean) / reference.scale  # jik876 has no mean/scale
    with torch.no_grad():
        assert (ours(normalised) - ref).abs().max() <= 1e-4

    del jik["conv_post.weight_g"]
    torch.save({"generator": jik}, tmp_path / "g_broken")
    with pytest.raises(KeyError):
        load_jik876_hifigan(tmp_path / "g_broken", tmp_path / "config.json")
