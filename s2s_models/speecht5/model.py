"""SpeechT5 text-to-speech network (text encoder + speech decoder), plain PyTorch.

Read top-down: sizes -> positional tables -> attention -> encoder layer -> text
encoder -> speech prenet -> decoder layer -> speech decoder -> post-net -> model.
The autoregressive loop lives in ``generation.py``; checkpoint loading in
``checkpoints.py``.

Layout facts that matter for parity with the published checkpoints:

* Every transformer layer is post-norm: ``x = LN(x + sublayer(x))``. The encoder
  applies one extra LayerNorm to its input embeddings; the decoder has none at the end.
* Text and speech positions use a sinusoid table scaled by a learned scalar ``alpha``
  (the "scaled positional encoding" of Transformer-TTS).
* Encoder self-attention adds a relative position bias: query . E[clip(i - j)], where
  E is a learned (2 * max_rel, head_dim) table shared by all heads and layers.
* The speech prenet's dropout (p = 0.5) stays on at inference, as in Tacotron 2; here
  the caller draws the masks (``draw_prenet_masks``) so a seed fixes them, and passing
  no masks switches the dropout off (used by parity tests).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SpeechT5Dims:
    n_vocab: int = 81  # characters + specials (<s>=0, <pad>=1, </s>=2, <unk>=3)
    n_state: int = 768  # model width
    n_text_layer: int = 12
    n_text_head: int = 12
    n_text_ffn: int = 3072
    n_speech_layer: int = 6
    n_speech_head: int = 12
    n_speech_ffn: int = 3072
    n_mels: int = 80
    reduction_factor: int = 2  # mel frames predicted per decoder step
    n_prenet_layer: int = 2
    n_prenet_units: int = 256
    prenet_dropout: float = 0.5  # always on at inference unless masks are omitted
    n_speaker: int = 512  # x-vector size
    n_postnet_layer: int = 5
    n_postnet_units: int = 256
    postnet_kernel: int = 5
    max_text_positions: int = 450
    max_speech_positions: int = 4000  # decoder steps (not mel frames) we can encode
    max_relative_position: int = 160
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    eos_token_id: int = 2
    activation: str = "gelu"  # "gelu" (exact erf form) or "relu"

    def verify(self) -> None:
        if self.n_state % self.n_text_head or self.n_state % self.n_speech_head:
            raise ValueError("n_state must be divisible by both head counts")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"unsupported activation {self.activation!r}")
        if not 0.0 <= self.prenet_dropout < 1.0:
            raise ValueError("prenet_dropout must be in [0, 1)")
        if self.postnet_kernel % 2 != 1 or self.n_postnet_layer < 1:
            raise ValueError("post-net needs >= 1 layer and an odd kernel")
        if min(self.reduction_factor, self.n_prenet_layer, self.n_mels) < 1:
            raise ValueError("reduction_factor, n_prenet_layer and n_mels must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sinusoid_table(n_positions: int, n_state: int) -> Tensor:
    """Interleaved sin/cos table (sin on even channels): (n_positions, n_state)."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(
        torch.arange(0, n_state, 2, dtype=torch.float32)
        * -(math.log(10000.0) / n_state)
    )
    table = torch.zeros(n_positions, n_state)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention; keys/values are projected separately so the
    decoder can cache them (see ``KVCache``)."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def _split(self, x: Tensor) -> Tensor:
        batch, n_ctx, n_state = x.shape  # -> (batch, n_head, n_ctx, head_dim)
        return x.view(batch, n_ctx, self.n_head, n_state // self.n_head).transpose(1, 2)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """(batch, n_src, n_state) -> keys, values: (batch, n_head, n_src, head_dim)."""
        return self._split(self.key(source)), self._split(self.value(source))

    def forward(
        self,
        x: Tensor,  # (batch, n_query, n_state)
        k: Tensor,  # (batch, n_head, n_key, head_dim)
        v: Tensor,  # (batch, n_head, n_key, head_dim)
        mask: Tensor | None = None,  # bool, True = blocked, broadcast to (b, h, q, k)
        rel_pos: Tensor | None = None,  # (n_query, n_key, head_dim)
    ) -> tuple[Tensor, Tensor]:
        q = self._split(self.query(x)) * k.shape[-1] ** -0.5
        scores = q @ k.transpose(-1, -2)  # (batch, n_head, n_query, n_key)
        if rel_pos is not None:
            scores = scores + torch.einsum("bhqd,qkd->bhqk", q, rel_pos)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).flatten(2)  # (batch, n_query, n_state)
        return self.out(out), weights


class FeedForward(nn.Module):
    def __init__(self, n_state: int, n_ffn: int, activation: str):
        super().__init__()
        self.fc_in = nn.Linear(n_state, n_ffn)
        self.fc_out = nn.Linear(n_ffn, n_state)
        self.act = F.gelu if activation == "gelu" else F.relu

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(self.act(self.fc_in(x)))


class EncoderLayer(nn.Module):
    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        n = dims.n_state
        self.attn = MultiHeadAttention(n, dims.n_text_head)
        self.attn_ln = nn.LayerNorm(n, eps=dims.layer_norm_eps)
        self.mlp = FeedForward(n, dims.n_text_ffn, dims.activation)
        self.mlp_ln = nn.LayerNorm(n, eps=dims.layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor | None, rel_pos: Tensor) -> Tensor:
        k, v = self.attn.project_kv(x)
        x = self.attn_ln(x + self.attn(x, k, v, mask, rel_pos)[0])
        return self.mlp_ln(x + self.mlp(x))


class TextEncoder(nn.Module):
    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        self.dims = dims
        self.embed_tokens = nn.Embedding(dims.n_vocab, dims.n_state, dims.pad_token_id)
        self.pos_alpha = nn.Parameter(torch.tensor(1.0))
        table = sinusoid_table(dims.max_text_positions, dims.n_state)
        self.register_buffer("positions", table, persistent=False)
        self.layer_norm = nn.LayerNorm(dims.n_state, eps=dims.layer_norm_eps)
        head_dim = dims.n_state // dims.n_text_head
        self.rel_pos = nn.Embedding(2 * dims.max_relative_position, head_dim)
        self.layers = nn.ModuleList(
            EncoderLayer(dims) for _ in range(dims.n_text_layer)
        )

    def relative_positions(self, n_ctx: int) -> Tensor:
        """Bias table E[clip(i - j)] for all query/key pairs: (n_ctx, n_ctx, d_head)."""
        pos = torch.arange(n_ctx, device=self.rel_pos.weight.device)
        m = self.dims.max_relative_position
        offset = (pos[:, None] - pos[None, :]).clamp(-m, m - 1) + m
        return self.rel_pos(offset)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> Tensor:
        """(batch, n_text) ids, mask 1 = real token -> (batch, n_text, n_state)."""
        n_text = input_ids.shape[1]
        if n_text > self.dims.max_text_positions:
            raise ValueError(f"{n_text} tokens > max {self.dims.max_text_positions}")
        x = self.embed_tokens(input_ids) + self.pos_alpha * self.positions[:n_text]
        x = self.layer_norm(x)
        key_mask = None  # (batch, 1, 1, n_text), True = padding
        if attention_mask is not None:
            key_mask = (attention_mask == 0)[:, None, None, :]
        rel_pos = self.relative_positions(n_text)
        for layer in self.layers:
            x = layer(x, key_mask, rel_pos)
        return x


class SpeechPrenet(nn.Module):
    """Previous mel frame -> decoder input: 2 x (linear, ReLU, dropout), linear,
    scaled positions, then the L2-normalised speaker x-vector concatenated and
    projected (linear + ReLU)."""

    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        sizes = [dims.n_mels] + [dims.n_prenet_units] * dims.n_prenet_layer
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.out = nn.Linear(dims.n_prenet_units, dims.n_state)
        self.pos_alpha = nn.Parameter(torch.tensor(1.0))
        table = sinusoid_table(dims.max_speech_positions, dims.n_state)
        self.register_buffer("positions", table, persistent=False)
        self.speaker_proj = nn.Linear(dims.n_speaker + dims.n_state, dims.n_state)

    def forward(
        self,
        mels: Tensor,  # (batch, n_frames, n_mels) decoder inputs
        speaker: Tensor | None,  # (batch, n_speaker) x-vectors
        offset: int = 0,  # position of mels[:, 0] (frames already in the cache)
        masks: list[Tensor] | None = None,  # per layer, (..., n_total, n_units)
    ) -> Tensor:
        n_frames = mels.shape[1]
        if offset + n_frames > self.positions.shape[0]:
            raise ValueError(f"decoder step {offset + n_frames} > max_speech_positions")
        x = mels
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x))
            if masks is not None:  # frame t always uses row t of the mask
                x = x * masks[i][..., offset : offset + n_frames, :]
        x = self.out(x) + self.pos_alpha * self.positions[offset : offset + n_frames]
        if speaker is not None:
            spk = F.normalize(speaker, dim=-1)[:, None, :].expand(-1, n_frames, -1)
            x = F.relu(self.speaker_proj(torch.cat([x, spk], dim=-1)))
        return x  # (batch, n_frames, n_state)


@dataclass
class KVCache:
    """The decoder's one cache. ``self_kv[i]`` holds layer i's self-attention keys and
    values for all frames decoded so far; ``cross_kv[i]`` holds the keys/values
    projected from the encoder output on the first call and is reused unchanged
    afterwards. Tensors are (batch, n_head, n_ctx, head_dim).

    Two ways to keep ``self_kv``: grown by concatenation on every call
    (``capacity=None``), or preallocated (``capacity`` positions, filled in place:
    no step copies the frames before it, and the buffers keep their addresses).
    Both give the same numbers."""

    self_kv: list[tuple[Tensor, Tensor] | None]
    cross_kv: list[tuple[Tensor, Tensor] | None]
    capacity: int | None = None  # preallocated positions; None: grow
    length: int = 0  # positions filled (preallocated cache)

    @classmethod
    def empty(cls, n_layer: int, capacity: int | None = None) -> KVCache:
        return cls([None] * n_layer, [None] * n_layer, capacity)

    @property
    def n_past(self) -> int:
        if self.capacity is not None:
            return self.length
        first = self.self_kv[0]
        return 0 if first is None else first[0].shape[2]

    def extend(self, index: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add layer ``index``'s new keys/values; returns all of that layer's so far.
        (A preallocated cache counts the new positions in ``advance``.)"""
        past = self.self_kv[index]
        if self.capacity is None:
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            self.self_kv[index] = (k, v)
            return k, v
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"{end} frames exceed the cache capacity {self.capacity}")
        if past is None:
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            past = (k.new_zeros(shape), v.new_zeros(shape))
            self.self_kv[index] = past
        past[0][:, :, self.length : end] = k
        past[1][:, :, self.length : end] = v
        return past[0][:, :, :end], past[1][:, :, :end]

    def advance(self, n_new: int) -> None:
        if self.capacity is not None:
            self.length += n_new

    def select(self, index: Tensor) -> KVCache:
        """Keep only the batch rows in ``index`` (drop finished utterances). A
        preallocated cache moves them to its first rows in place."""

        def pick(kv: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
            return None if kv is None else (kv[0][index], kv[1][index])

        def compact(kv: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
            if kv is None:
                return None
            n, used = index.numel(), self.length
            for buf in kv:
                buf[:n, :, :used] = buf[:, :, :used].index_select(0, index)
            return kv[0][:n], kv[1][:n]

        own = pick if self.capacity is None else compact
        return KVCache(
            [own(kv) for kv in self.self_kv],
            [pick(kv) for kv in self.cross_kv],
            self.capacity,
            self.length,
        )


class DecoderLayer(nn.Module):
    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        n, eps = dims.n_state, dims.layer_norm_eps
        self.self_attn = MultiHeadAttention(n, dims.n_speech_head)
        self.self_attn_ln = nn.LayerNorm(n, eps=eps)
        self.cross_attn = MultiHeadAttention(n, dims.n_speech_head)
        self.cross_attn_ln = nn.LayerNorm(n, eps=eps)
        self.mlp = FeedForward(n, dims.n_speech_ffn, dims.activation)
        self.mlp_ln = nn.LayerNorm(n, eps=eps)

    def forward(
        self,
        x: Tensor,  # (batch, n_new, n_state)
        memory: Tensor,  # (batch, n_text, n_state) encoder output
        memory_mask: Tensor | None,  # (batch, 1, 1, n_text), True = padding
        causal_mask: Tensor,  # (n_new, n_past + n_new), True = future
        cache: KVCache | None,
        index: int,
    ) -> tuple[Tensor, Tensor]:
        k, v = self.self_attn.project_kv(x)
        if cache is not None:
            k, v = cache.extend(index, k, v)
        x = self.self_attn_ln(x + self.self_attn(x, k, v, causal_mask)[0])

        cross = None if cache is None else cache.cross_kv[index]
        if cross is None:
            cross = self.cross_attn.project_kv(memory)
            if cache is not None:
                cache.cross_kv[index] = cross
        h, cross_weights = self.cross_attn(x, cross[0], cross[1], memory_mask)
        x = self.cross_attn_ln(x + h)
        return self.mlp_ln(x + self.mlp(x)), cross_weights


class SpeechDecoder(nn.Module):
    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        self.prenet = SpeechPrenet(dims)
        self.layers = nn.ModuleList(
            DecoderLayer(dims) for _ in range(dims.n_speech_layer)
        )

    def forward(
        self,
        mels: Tensor,  # (batch, n_new, n_mels) previous frames (zeros first)
        memory: Tensor,  # (batch, n_text, n_state)
        memory_mask: Tensor | None = None,  # (batch, n_text), 1 = real token
        speaker: Tensor | None = None,  # (batch, n_speaker)
        cache: KVCache | None = None,  # updated in place when given
        prenet_masks: list[Tensor] | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Returns hidden states (batch, n_new, n_state) and, per layer, the
        cross-attention weights (batch, n_head, n_new, n_text)."""
        n_past = 0 if cache is None else cache.n_past
        x = self.prenet(mels, speaker, n_past, prenet_masks)
        n_new = x.shape[1]
        query_pos = torch.arange(n_past, n_past + n_new, device=x.device)
        key_pos = torch.arange(n_past + n_new, device=x.device)
        causal_mask = key_pos[None, :] > query_pos[:, None]
        key_mask = None if memory_mask is None else (memory_mask == 0)[:, None, None, :]
        cross_weights = []
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, memory, key_mask, causal_mask, cache, i)
            cross_weights.append(weights)
        if cache is not None:
            cache.advance(n_new)
        return x, cross_weights


class PostNet(nn.Module):
    """Five conv + batch-norm layers (tanh on all but the last) refining the mels."""

    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        n = dims.n_postnet_layer
        sizes = [dims.n_mels] + [dims.n_postnet_units] * (n - 1) + [dims.n_mels]
        self.convs = nn.ModuleList(
            nn.Conv1d(
                a, b, dims.postnet_kernel, padding=dims.postnet_kernel // 2, bias=False
            )
            for a, b in pairwise(sizes)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])

    def forward(self, mels: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(batch, n_frames, n_mels) -> same shape, residual added. With ``lengths``,
        frames past each item's end are zeroed between layers, so a padded batch gives
        exactly what each item gives alone."""
        x = mels.transpose(1, 2)  # (batch, n_mels, n_frames)
        keep = None
        if lengths is not None:
            frames = torch.arange(x.shape[-1], device=x.device)
            keep = (frames[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
            x = x * keep
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x))
            if i < len(self.convs) - 1:
                x = torch.tanh(x)
            if keep is not None:
                x = x * keep
        return mels + x.transpose(1, 2)


class SpeechT5TTS(nn.Module):
    """Text ids (+ x-vector) -> log10 mel frames (16 kHz, 80 bins, hop 256)."""

    def __init__(self, dims: SpeechT5Dims):
        super().__init__()
        dims.verify()
        self.dims = dims
        self.text_encoder = TextEncoder(dims)
        self.speech_decoder = SpeechDecoder(dims)
        self.feat_out = nn.Linear(dims.n_state, dims.n_mels * dims.reduction_factor)
        self.prob_out = nn.Linear(dims.n_state, dims.reduction_factor)
        self.postnet = PostNet(dims)

    def draw_prenet_masks(
        self, n_frames: int, generator: torch.Generator | None = None, batch: int = 0
    ) -> list[Tensor]:
        """Dropout masks for the speech prenet, one per layer: (n_frames, n_units), or
        (batch, n_frames, n_units) when ``batch`` > 0. Entries are 0 or 1 / (1 - p)."""
        p = self.dims.prenet_dropout
        shape = (batch, n_frames) if batch else (n_frames,)
        device = self.feat_out.weight.device
        masks = []
        for _ in range(self.dims.n_prenet_layer):
            u = torch.rand(*shape, self.dims.n_prenet_units, generator=generator)
            masks.append(((u >= p).float() / (1.0 - p)).to(device))
        return masks

    def project(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Decoder states (batch, n_steps, n_state) -> mels before the post-net
        (batch, n_steps * r, n_mels) and stop logits (batch, n_steps * r)."""
        batch = hidden.shape[0]
        mels = self.feat_out(hidden).view(batch, -1, self.dims.n_mels)
        return mels, self.prob_out(hidden).view(batch, -1)

    def forward(
        self,
        input_ids: Tensor,  # (batch, n_text)
        attention_mask: Tensor | None,  # (batch, n_text), 1 = real token
        decoder_mels: Tensor,  # (batch, n_steps, n_mels) zeros, then every r-th frame
        speaker: Tensor | None = None,  # (batch, n_speaker)
        prenet_masks: list[Tensor] | None = None,
    ) -> TTSOutput:
        """Teacher-forced pass (training, and the uncached reference for tests)."""
        memory = self.text_encoder(input_ids, attention_mask)
        hidden, cross = self.speech_decoder(
            decoder_mels, memory, attention_mask, speaker, None, prenet_masks
        )
        mels_before, stop_logits = self.project(hidden)
        return TTSOutput(mels_before, self.postnet(mels_before), stop_logits, cross)


class TTSOutput(NamedTuple):
    mels_before_postnet: Tensor  # (batch, n_steps * r, n_mels)
    mels: Tensor  # (batch, n_steps * r, n_mels)
    stop_logits: Tensor  # (batch, n_steps * r)
    cross_attentions: list[Tensor]  # per layer (batch, n_head, n_steps, n_text)
