"""Whisper encoder-decoder in plain PyTorch (architecture only; decoding is elsewhere).

Read top-down in math order: attention -> residual block -> audio encoder -> text
decoder -> model. Parameter names follow openai-whisper's state dict, so an OpenAI
checkpoint loads with no renaming and the other loaders map onto one layout.

KV cache
--------
One mechanism, :class:`KVCache`, owned by the caller and updated in place by
:meth:`Whisper.logits`:

* self-attention: per decoder layer, keys/values of every token fed so far,
  ``(batch, n_head, n_past, head_dim)``; each call appends the new tokens' K/V.
* cross-attention: per decoder layer, keys/values of the audio features, computed on
  the first call for an audio batch and reused by every later step.

``KVCache.reorder(indices)`` selects batch rows of every cached tensor: batched greedy
decoding uses it to drop finished rows, and the caller then selects the same rows of
``audio_features`` (not read again once the cross K/V exist, but shapes are checked).

Beam search keeps ``beam`` hypotheses per window that all attend to the same audio.
With ``KVCache.cross_group = beam`` the cross K/V keep one row per window and decoder
rows ``j * beam .. (j + 1) * beam - 1`` share window ``j``'s (queried together), so
reordering hypotheses (``reorder(indices, cross=False)``) copies only the small
self-attention cache and the 1500-position cross K/V are neither copied nor repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class WhisperDims:
    """Architecture sizes, stored with (or derived from) a checkpoint."""

    n_mels: int  # mel bins of the input features (80, or 128 for large-v3)
    n_audio_ctx: int  # encoder positions (1500 = 30 s after the stride-2 conv)
    n_audio_state: int  # encoder width
    n_audio_head: int  # encoder attention heads
    n_audio_layer: int  # encoder blocks
    n_vocab: int  # token vocabulary (51864 English-only, 51865/51866 multilingual)
    n_text_ctx: int  # decoder positions (448)
    n_text_state: int  # decoder width
    n_text_head: int  # decoder attention heads
    n_text_layer: int  # decoder blocks

    def verify(self) -> None:
        """Raise ValueError on sizes that cannot form a Whisper model."""
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"WhisperDims.{name} must be a positive int: {value}")
        if self.n_audio_state % self.n_audio_head:
            raise ValueError("n_audio_state must be divisible by n_audio_head")
        if self.n_text_state % self.n_text_head:
            raise ValueError("n_text_state must be divisible by n_text_head")
        if self.n_audio_state != self.n_text_state:
            raise ValueError("cross-attention needs n_audio_state == n_text_state")


@dataclass
class KVCache:
    """Keys and values of past decoder steps; see the module docstring.

    ``self_kv[i]`` and ``cross_kv[i]`` are ``(key, value)`` pairs of layer ``i``, each
    ``(batch, n_head, n_positions, head_dim)``.
    """

    self_kv: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    cross_kv: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    cross_group: int = 1  # decoder rows per audio row (beam size in beam search)

    @property
    def n_tokens(self) -> int:
        """Tokens already fed to the decoder: the position of the next one."""
        if not self.self_kv:
            return 0
        return self.self_kv[0][0].shape[2]

    def reorder(self, indices: Tensor, cross: bool = True) -> None:
        """Keep batch rows ``indices`` (in that order) of every cached tensor.

        ``cross=False`` leaves the cross-attention K/V alone: right when every new
        row ``j`` attends to the same audio as old row ``j`` (beam search moving
        hypotheses between beams of one window), and it saves copying
        ``(rows, n_head, 1500, head_dim)`` tensors at every step.
        """
        stores = (self.self_kv, self.cross_kv) if cross else (self.self_kv,)
        for store in stores:
            for layer, (key, value) in store.items():
                idx = indices.to(key.device)
                store[layer] = (key.index_select(0, idx), value.index_select(0, idx))


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Fixed sinusoidal position table (sin half, then cos half): (length, channels)."""
    assert channels % 2 == 0
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention on F.scaled_dot_product_attention (key has no bias)."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def _split(self, x: Tensor) -> Tensor:
        # (batch, n_pos, n_state) -> (batch, n_head, n_pos, head_dim)
        batch, n_pos, _ = x.shape
        return x.view(batch, n_pos, self.n_head, -1).transpose(1, 2)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``source`` (batch, n_pos, n_state), split into heads."""
        return self._split(self.key(source)), self._split(self.value(source))

    def forward(
        self,
        x: Tensor,
        kv: tuple[Tensor, Tensor],
        causal_offset: int | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``x`` (batch, n_q, n_state) to ``kv`` (two (b, h, n_k, d)).

        ``causal_offset`` is None for full attention; otherwise query ``i`` sits at
        position ``causal_offset + i`` and may see keys up to that position.
        ``mask`` (boolean, True = may attend, broadcast to (b, h, n_q, n_k)) is
        used as given instead: the fixed-shape decoder masks unused cache slots.
        """
        q = self._split(self.query(x))  # (batch, n_head, n_q, head_dim)
        key, value = kv
        n_q, n_k = q.shape[2], key.shape[2]
        is_causal = False
        if mask is None and causal_offset is not None and n_q > 1:
            if causal_offset == 0 and n_q == n_k:
                is_causal = True
            else:
                mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device)
                mask = mask.tril(causal_offset)
        out = F.scaled_dot_product_attention(
            q, key, value, attn_mask=mask, is_causal=is_causal
        )  # (batch, n_head, n_q, head_dim)
        out = out.transpose(1, 2).flatten(2)  # (batch, n_q, n_state)
        return self.out(out)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, 4x GELU MLP."""

    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        self.cross_attn = (
            MultiHeadAttention(n_state, n_head) if cross_attention else None
        )
        self.cross_attn_ln = nn.LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.Sequential(
            nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state)
        )
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward_encoder(self, x: Tensor) -> Tensor:
        """Encoder block: full self-attention over ``x`` (batch, n_ctx, n_state)."""
        h = self.attn_ln(x)
        x = x + self.attn(h, self.attn.project_kv(h))
        return x + self.mlp(self.mlp_ln(x))

    def forward_decoder(
        self,
        x: Tensor,
        audio_features: Tensor,
        layer: int,
        cache: KVCache,
        causal_offset: int,
    ) -> Tensor:
        """Decoder block on new tokens ``x`` (batch, n_new, n_state); updates cache."""
        h = self.attn_ln(x)
        new_k, new_v = self.attn.project_kv(h)  # (batch, n_head, n_new, head_dim)
        if layer in cache.self_kv:
            past_k, past_v = cache.self_kv[layer]
            new_k = torch.cat([past_k, new_k], dim=2)
            new_v = torch.cat([past_v, new_v], dim=2)
        cache.self_kv[layer] = (new_k, new_v)
        x = x + self.attn(h, (new_k, new_v), causal_offset=causal_offset)

        if layer not in cache.cross_kv:
            cache.cross_kv[layer] = self.cross_attn.project_kv(audio_features)
        h = self.cross_attn_ln(x)
        group = cache.cross_group
        if group > 1:  # (rows, n_new, D) -> (rows // group, group * n_new, D)
            h = h.reshape(h.shape[0] // group, group * h.shape[1], h.shape[2])
        h = self.cross_attn(h, cache.cross_kv[layer])
        x = x + h.reshape(x.shape)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """Two convolutions (the second halves time), sinusoidal positions, blocks."""

    def __init__(
        self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int
    ):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, n_state))
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)
        )
        self.ln_post = nn.LayerNorm(n_state)

    def forward(self, mel: Tensor) -> Tensor:
        """(batch, n_mels, 2 * n_ctx) log-mel -> (batch, n_ctx, n_state)."""
        x = F.gelu(self.conv1(mel))  # (batch, n_state, 2 * n_ctx)
        x = F.gelu(self.conv2(x))  # (batch, n_state, n_ctx)
        x = x.transpose(1, 2)  # (batch, n_ctx, n_state)
        if x.shape[1:] != self.positional_embedding.shape:
            raise ValueError(
                f"encoder expects {2 * self.positional_embedding.shape[0]} mel frames, "
                f"got input of shape {tuple(mel.shape)}"
            )
        x = x + self.positional_embedding.to(x.dtype)
        for block in self.blocks:
            x = block.forward_encoder(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    """Token + learned position embeddings, causal blocks with cross-attention."""

    def __init__(
        self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(n_vocab, n_state)
        self.positional_embedding = nn.Parameter(torch.empty(n_ctx, n_state))
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(n_state, n_head, cross_attention=True)
            for _ in range(n_layer)
        )
        self.ln = nn.LayerNorm(n_state)

    def forward(
        self,
        tokens: Tensor,
        audio_features: Tensor,
        cache: KVCache,
        positions: list[int] | None = None,
    ) -> Tensor:
        """New tokens (batch, n_new) -> float32 logits (batch, n_new or n_pos, n_vocab).

        ``positions`` (indices into the new tokens) limits the vocabulary projection,
        the costliest step for a long prefix, to the positions the caller reads.
        """
        offset = cache.n_tokens
        n_new = tokens.shape[1]
        if offset + n_new > self.positional_embedding.shape[0]:
            raise ValueError(
                f"{offset + n_new} tokens exceed the decoder context "
                f"of {self.positional_embedding.shape[0]}"
            )
        x = self.token_embedding(tokens)  # (batch, n_new, n_state)
        x = x + self.positional_embedding[offset : offset + n_new]
        x = x.to(audio_features.dtype)
        for layer, block in enumerate(self.blocks):
            x = block.forward_decoder(x, audio_features, layer, cache, offset)
        if positions is not None:
            x = x[:, positions]  # (batch, n_pos, n_state)
        x = self.ln(x)
        # Output projection tied to the token embedding; logits kept in float32.
        return (x @ self.token_embedding.weight.to(x.dtype).T).float()


class Whisper(nn.Module):
    """Whisper speech-to-text model: ``.encoder`` (audio) and ``.decoder`` (text)."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        dims.verify()
        self.dims = dims
        self.encoder = AudioEncoder(
            dims.n_mels,
            dims.n_audio_ctx,
            dims.n_audio_state,
            dims.n_audio_head,
            dims.n_audio_layer,
        )
        self.decoder = TextDecoder(
            dims.n_vocab,
            dims.n_text_ctx,
            dims.n_text_state,
            dims.n_text_head,
            dims.n_text_layer,
        )

    @property
    def device(self) -> torch.device:
        return self.decoder.token_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.token_embedding.weight.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.dims.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        # 51865 -> 99 languages; 51866 (large-v3, adds Cantonese) -> 100.
        return self.dims.n_vocab - 51765 - int(self.is_multilingual)

    def embed_audio(self, mel: Tensor) -> Tensor:
        """Encode log-mel features.

        Parameters
        ----------
        mel
            ``(batch, n_mels, 3000)`` log-mel features (any float dtype; cast to the
            model's).

        Returns
        -------
        Tensor
            ``(batch, n_audio_ctx, n_audio_state)`` audio features in the model dtype.
        """
        return self.encoder(mel.to(device=self.device, dtype=self.dtype))

    def logits(
        self,
        tokens: Tensor,
        audio_features: Tensor,
        cache: KVCache | None = None,
        positions: list[int] | None = None,
    ) -> Tensor:
        """Next-token logits.

        Parameters
        ----------
        tokens
            ``(batch, n_new)`` token ids. Without a cache these are the whole sequence
            from position 0; with one they are the tokens after ``cache.n_tokens``.
        audio_features
            ``(batch, n_audio_ctx, n_audio_state)`` from :meth:`embed_audio`;
            ``batch / cache.cross_group`` rows when the cache groups rows.
        cache
            A :class:`KVCache`, updated in place; None for a one-off full pass.
        positions
            Optional indices into the new tokens whose logits are wanted (e.g.
            ``[-1]``); all positions when None.

        Returns
        -------
        Tensor
            ``(batch, n_new, n_vocab)`` float32 logits (``n_new = len(positions)``
            when given).
        """
        if cache is None:
            cache = KVCache()
        if tokens.shape[0] != audio_features.shape[0] * cache.cross_group:
            raise ValueError(
                f"batch mismatch: tokens {tuple(tokens.shape)}, audio_features "
                f"{tuple(audio_features.shape)}, cross_group {cache.cross_group}"
            )
        return self.decoder(tokens.to(self.device), audio_features, cache, positions)

    def forward(self, mel: Tensor, tokens: Tensor) -> Tensor:
        """Full pass: (batch, n_mels, 3000), (batch, n_tokens) -> float32 logits."""
        return self.logits(tokens, self.embed_audio(mel))
