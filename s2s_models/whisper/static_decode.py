"""Fixed-shape greedy decoder steps over a preallocated KV cache (CUDA-graph ready).

The eager decoder (:class:`~s2s_models.whisper.model.KVCache`) grows its
self-attention cache by one position per step and shrinks the batch as windows
finish. Every step then has new tensor shapes and new addresses, and each of the
~30 small kernels of a step is launched from Python: on a GPU that launch overhead,
not arithmetic, bounds a tiny or base model's decode.

:class:`StaticDecoder` runs the same step with shapes that do not change:

* self-attention K/V live in buffers ``(rows, n_head, n_text_ctx, head_dim)``
  allocated once; step ``t`` writes position ``t`` in place (``index_copy_`` at a
  position held in a tensor) and attends over the whole buffer with positions
  ``> t`` masked out, which is the eager attention over ``t + 1`` keys;
* the position is a device tensor, so the step has no Python-side shape or value
  that changes from one token to the next;
* finished windows leave the batch by compacting the cache rows in place into the
  first ``n`` rows (the storage, hence every captured address, stays put). With
  graphs, the batch runs at the next power of two >= ``n`` (one graph per size),
  so a batch of 256 windows needs at most nine graphs however they finish.

On CUDA each batch size's step is captured once in a CUDA graph and replayed for
every token. On the CPU the same code runs eagerly (``graphs=False``): that is how
the tests check it against the eager decoder, token for token.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from s2s_models.whisper.model import KVCache, Whisper

log = logging.getLogger(__name__)


def _bucket(n: int, rows: int) -> int:
    """Smallest power of two >= n, capped at the allocated rows."""
    return min(rows, 1 << max(0, (n - 1).bit_length()))


class StaticDecoder:
    """Greedy decoding steps for ``rows`` windows whose prefix is already in ``cache``.

    Parameters
    ----------
    model
        The Whisper model (any device and dtype).
    cache
        The eager cache after the prompt pass (``Whisper.logits`` on the prefix):
        its self-attention K/V are copied into the fixed buffers and its
        cross-attention K/V are used as they are (compacted in place later).
    graphs
        Capture and replay CUDA graphs (CUDA only); eager fixed-shape steps if False.
    """

    def __init__(self, model: Whisper, cache: KVCache, graphs: bool = False):
        if cache.cross_group != 1:
            raise ValueError("StaticDecoder decodes one row per window (greedy)")
        if graphs and model.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.model, self.graphs = model, graphs
        decoder = model.decoder
        self.capacity = decoder.positional_embedding.shape[0]
        self.length = cache.n_tokens  # position of the next token
        first_k = cache.self_kv[0][0]
        self.rows = self.n = first_k.shape[0]
        device, dtype = first_k.device, first_k.dtype
        self.self_kv, self.cross_kv = [], []
        for layer in range(len(decoder.blocks)):
            key, value = cache.self_kv[layer]
            shape = (self.rows, key.shape[1], self.capacity, key.shape[3])
            k_buf = torch.zeros(shape, device=device, dtype=dtype)
            v_buf = torch.zeros(shape, device=device, dtype=dtype)
            k_buf[:, :, : self.length] = key
            v_buf[:, :, : self.length] = value
            self.self_kv.append((k_buf, v_buf))
            ck, cv = cache.cross_kv[layer]
            self.cross_kv.append((ck.contiguous(), cv.contiguous()))
        cache.self_kv.clear()  # the buffers above replace them
        cache.cross_kv.clear()
        self.tokens = torch.zeros(self.rows, 1, dtype=torch.long, device=device)
        self.position = torch.full((1,), self.length, dtype=torch.long, device=device)
        self.key_index = torch.arange(self.capacity, device=device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor]] = {}

    # ------------------------------------------------------------------ the step
    def _step(self, n: int) -> Tensor:
        """Logits (n, n_vocab) float32 for ``self.tokens[:n]`` at ``self.position``;
        writes that position's K/V into the first ``n`` rows of the buffers."""
        decoder = self.model.decoder
        tokens = self.tokens[:n]
        x = decoder.token_embedding(tokens)  # (n, 1, n_state)
        x = x + decoder.positional_embedding.index_select(0, self.position)
        x = x.to(self.self_kv[0][0].dtype)
        mask = (self.key_index <= self.position)[None, None, None, :]  # (1,1,1,cap)
        for layer, block in enumerate(decoder.blocks):
            h = block.attn_ln(x)
            new_k, new_v = block.attn.project_kv(h)  # (n, n_head, 1, head_dim)
            k_buf, v_buf = self.self_kv[layer]
            k_buf[:n].index_copy_(2, self.position, new_k)
            v_buf[:n].index_copy_(2, self.position, new_v)
            x = x + block.attn(h, (k_buf[:n], v_buf[:n]), mask=mask)
            ck, cv = self.cross_kv[layer]
            x = x + block.cross_attn(block.cross_attn_ln(x), (ck[:n], cv[:n]))
            x = x + block.mlp(block.mlp_ln(x))
        x = decoder.ln(x)[:, 0]  # (n, n_state)
        return (x @ decoder.token_embedding.weight.to(x.dtype).T).float()

    def _graph(self, size: int) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        """The captured step for batch ``size`` (captured on first use)."""
        if size not in self._graphs:
            stream = torch.cuda.Stream(device=self.tokens.device)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up outside the graph, as required
                for _ in range(2):
                    self._step(size)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self._step(size)
            self._graphs[size] = (graph, logits)
        return self._graphs[size]

    @torch.inference_mode()
    def step(self, tokens: Tensor) -> Tensor:
        """Feed one token per active row; returns next-token logits (n, n_vocab)."""
        n = tokens.shape[0]
        if n != self.n:
            raise ValueError(f"{n} tokens for {self.n} active rows")
        if self.length >= self.capacity:
            raise ValueError(f"decoder context of {self.capacity} tokens is full")
        self.tokens[:n, 0].copy_(tokens)
        self.position.fill_(self.length)
        out = None
        if self.graphs:
            try:
                graph, logits = self._graph(_bucket(n, self.rows))
            except RuntimeError as exc:  # a kernel that cannot be captured: go on eager
                log.warning("CUDA graph capture failed (%s); decoding without", exc)
                self.graphs = False
            else:
                graph.replay()
                out = logits[:n]
        if out is None:
            out = self._step(n)
        self.length += 1
        return out

    @torch.inference_mode()
    def keep(self, rows: list[int]) -> None:
        """Keep active rows ``rows`` (increasing), moved to the front in place."""
        if rows == list(range(self.n)):
            return
        index = torch.tensor(rows, device=self.tokens.device)
        n, used = len(rows), self.length
        for k_buf, v_buf in self.self_kv:
            k_buf[:n, :, :used] = k_buf[:, :, :used].index_select(0, index)
            v_buf[:n, :, :used] = v_buf[:, :, :used].index_select(0, index)
        for ck, cv in self.cross_kv:
            ck[:n] = ck.index_select(0, index)
            cv[:n] = cv.index_select(0, index)
        self.n = n
