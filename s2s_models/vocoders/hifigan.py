"""HiFi-GAN generator (Kong et al. 2020) for inference, and its checkpoint loaders.

Architecture: conv_pre (k=7) -> for each upsampling stage: leaky ReLU, transposed conv,
mean of the multi-receptive-field residual blocks -> leaky ReLU (slope 0.01) ->
conv_post (k=7) -> tanh. Module names follow jik876/hifi-gan (``ups``, ``resblocks``,
``convs1``/``convs2``), so its checkpoints map one to one.

Weight normalisation is a training device: the loaders fold ``weight_g``/``weight_v``
(or the newer ``parametrizations.weight.original0/1``) into a plain ``weight`` once,
``weight = g * v / ||v||`` with the norm over every dimension but the first, and the
network runs on plain convolutions.

Two layouts are read, never by unpickling code (safetensors or
``torch.load(weights_only=True)``):

* Hugging Face ``microsoft/speecht5_hifigan``: ``config.json`` (``model_type``
  ``speecht5_hifigan``) + ``model.safetensors`` or ``pytorch_model.bin``. Renamed:
  ``upsampler.N.*`` -> ``ups.N.*``; ``mean``/``scale`` (input normalisation,
  ``(mel - mean) / scale``) kept. Nothing is transposed.
* jik876/hifi-gan: a generator file ``{"generator": state_dict}`` next to the
  training ``config.json``. Names are already ours; there is no input normalisation.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class HiFiGanDims:
    n_mels: int = 80
    upsample_initial_channel: int = 512
    upsample_rates: tuple[int, ...] = (4, 4, 4, 4)  # product = hop length
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 8, 8)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5),) * 3
    resblock: str = "1"  # "1": two convs per dilation; "2": one conv per dilation
    leaky_relu_slope: float = 0.1
    sampling_rate: int = 16000
    normalize_before: bool = True  # apply (mel - mean) / scale before conv_pre

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    def verify(self) -> None:
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError(
                "upsample_rates and upsample_kernel_sizes differ in length"
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock kernel and dilation lists differ in length")
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError(
                "upsample_initial_channel must halve cleanly at every stage"
            )

    @classmethod
    def from_hf_config(cls, c: dict[str, Any]) -> HiFiGanDims:
        return cls(
            n_mels=c["model_in_dim"],
            upsample_initial_channel=c["upsample_initial_channel"],
            upsample_rates=tuple(c["upsample_rates"]),
            upsample_kernel_sizes=tuple(c["upsample_kernel_sizes"]),
            resblock_kernel_sizes=tuple(c["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(
                tuple(d) for d in c["resblock_dilation_sizes"]
            ),
            leaky_relu_slope=c["leaky_relu_slope"],
            sampling_rate=c["sampling_rate"],
            normalize_before=c["normalize_before"],
        )

    @classmethod
    def from_jik876_config(cls, c: dict[str, Any]) -> HiFiGanDims:
        return cls(
            n_mels=c.get("num_mels", 80),
            upsample_initial_channel=c["upsample_initial_channel"],
            upsample_rates=tuple(c["upsample_rates"]),
            upsample_kernel_sizes=tuple(c["upsample_kernel_sizes"]),
            resblock_kernel_sizes=tuple(c["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(
                tuple(d) for d in c["resblock_dilation_sizes"]
            ),
            resblock=str(c["resblock"]),
            sampling_rate=c["sampling_rate"],
            normalize_before=False,  # jik876 feeds its log-mels as they are
        )


def _same_conv(channels: int, kernel: int, dilation: int) -> nn.Conv1d:
    return nn.Conv1d(
        channels,
        channels,
        kernel,
        dilation=dilation,
        padding=(kernel * dilation - dilation) // 2,
    )


class ResBlock1(nn.Module):
    """Per dilation d: x += conv_1(lrelu(conv_d(lrelu(x))))."""

    def __init__(
        self, channels: int, kernel: int, dilations: tuple[int, ...], slope: float
    ):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(_same_conv(channels, kernel, d) for d in dilations)
        self.convs2 = nn.ModuleList(_same_conv(channels, kernel, 1) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, self.slope)), self.slope))
        return x


class ResBlock2(nn.Module):
    """Per dilation d: x += conv_d(lrelu(x))."""

    def __init__(
        self, channels: int, kernel: int, dilations: tuple[int, ...], slope: float
    ):
        super().__init__()
        self.slope = slope
        self.convs = nn.ModuleList(_same_conv(channels, kernel, d) for d in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, self.slope))
        return x


class HiFiGanGenerator(nn.Module):
    def __init__(self, dims: HiFiGanDims):
        super().__init__()
        dims.verify()
        self.dims = dims
        ch = dims.upsample_initial_channel
        self.conv_pre = nn.Conv1d(dims.n_mels, ch, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        block = ResBlock1 if dims.resblock == "1" else ResBlock2
        for i, (rate, kernel) in enumerate(
            zip(dims.upsample_rates, dims.upsample_kernel_sizes, strict=True)
        ):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(
                nn.ConvTranspose1d(
                    c_in, c_out, kernel, rate, padding=(kernel - rate) // 2
                )
            )
            for k, d in zip(
                dims.resblock_kernel_sizes, dims.resblock_dilation_sizes, strict=True
            ):
                self.resblocks.append(block(c_out, k, d, dims.leaky_relu_slope))
        self.conv_post = nn.Conv1d(c_out, 1, 7, padding=3)
        self.register_buffer("mean", torch.zeros(dims.n_mels))
        self.register_buffer("scale", torch.ones(dims.n_mels))

    def forward(self, mels: Tensor) -> Tensor:
        """(batch, n_frames, n_mels) log-mels -> (batch, n_frames * hop_length) audio
        in [-1, 1]. For a padded batch, keep ``length * hop_length`` samples per item
        (the last few frames' samples also see the padding)."""
        if self.dims.normalize_before:
            mels = (mels - self.mean) / self.scale
        x = self.conv_pre(mels.transpose(1, 2))  # (batch, channels, n_frames)
        n_kernels = len(self.dims.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.dims.leaky_relu_slope))
            blocks = self.resblocks[i * n_kernels : (i + 1) * n_kernels]
            x = sum(block(x) for block in blocks) / n_kernels
        # the original uses leaky_relu's default slope (0.01) here, not the 0.1 above
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x).squeeze(1)


def fold_weight_norm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace every weight-normalised pair by its plain weight, g * v / ||v||.

    Recognises ``X.weight_g``/``X.weight_v`` (torch.nn.utils.weight_norm) and
    ``X.parametrizations.weight.original0``/``original1`` (the parametrize API)."""
    out = dict(state)
    pairs = [
        ("weight_g", "weight_v"),
        ("parametrizations.weight.original0", "parametrizations.weight.original1"),
    ]
    for g_name, v_name in pairs:
        for key in state:
            if key != g_name and not key.endswith("." + g_name):
                continue
            stem = key[: -len(g_name)]  # "conv_pre." or "" for a bare module
            g, v = out.pop(key), out.pop(stem + v_name)
            dims = tuple(range(1, v.dim()))
            out[stem + "weight"] = g * v / v.norm(dim=dims, keepdim=True)
    return out


def _read_tensors(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_checked(
    model: HiFiGanGenerator, state: dict[str, Tensor]
) -> HiFiGanGenerator:
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unexpected or missing:
        raise KeyError(
            f"HiFi-GAN tensors: unexpected {unexpected[:5]}, missing {missing[:5]}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{key}: shape {tuple(tensor.shape)} != {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_hf_hifigan(model_dir: str | Path) -> HiFiGanGenerator:
    """Load a Hugging Face ``SpeechT5HifiGan`` folder (microsoft/speecht5_hifigan)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    weights = model_dir / "model.safetensors"
    if not weights.exists():
        weights = model_dir / "pytorch_model.bin"
    state = fold_weight_norm(_read_tensors(weights))
    state = {re.sub(r"^upsampler\.", "ups.", k): v for k, v in state.items()}
    return _load_checked(HiFiGanGenerator(HiFiGanDims.from_hf_config(config)), state)


def load_jik876_hifigan(checkpoint: str | Path, config: str | Path) -> HiFiGanGenerator:
    """Load a jik876/hifi-gan generator file (``{"generator": state_dict}``, e.g.
    ``g_02500000``) with the ``config.json`` it was trained with."""
    dims = HiFiGanDims.from_jik876_config(json.loads(Path(config).read_text()))
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = fold_weight_norm(raw["generator"] if "generator" in raw else raw)
    model = HiFiGanGenerator(dims)
    state.update({"mean": model.mean.clone(), "scale": model.scale.clone()})
    return _load_checked(model, state)
