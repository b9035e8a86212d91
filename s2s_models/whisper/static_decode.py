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

The buffers and graphs outlive a batch: :func:`static_decoder` keeps one decoder
per model and loads each new batch into it (prefix K/V and cross-attention K/V
copied into the same storage), so a corpus captures its graphs once, not once per
batch. A batch with more rows than the kept decoder, another dtype or device, or
a second thread decoding at the same time gets a decoder of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import Tensor

from s2s_models.whisper.model import KVCache, Whisper

log = logging.getLogger(__name__)


def _bucket(n: int, rows: int) -> int:
    """Smallest power of two >= n, capped at the allocated rows."""
    return min(rows, 1 << max(0, (n - 1).bit_length()))


class StaticDecoder:
    """Greedy decoding steps over fixed buffers for up to ``rows`` windows (the
    first batch's size).

    Parameters
    ----------
    model
        The Whisper model (any device and dtype).
    cache
        The eager cache after the prompt pass (``Whisper.logits`` on the prefix) of
        the first batch; sizes the buffers and is loaded as by :meth:`load`.
    graphs
        Capture and replay CUDA graphs (CUDA only); eager fixed-shape steps if False.
    """

    def __init__(self, model: Whisper, cache: KVCache, graphs: bool = False):
        if graphs and model.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.model, self.graphs, self.wants_graphs = model, graphs, graphs
        decoder = model.decoder
        self.capacity = decoder.positional_embedding.shape[0]
        first_k, first_ck = cache.self_kv[0][0], cache.cross_kv[0][0]
        self.rows = first_k.shape[0]
        device, dtype = first_k.device, first_k.dtype

        def buffer(like: Tensor, positions: int) -> Tensor:
            shape = (self.rows, like.shape[1], positions, like.shape[3])
            return torch.zeros(shape, device=device, dtype=dtype)

        self.self_kv = [
            (buffer(first_k, self.capacity), buffer(first_k, self.capacity))
            for _ in decoder.blocks
        ]
        self.cross_kv = [
            (buffer(first_ck, first_ck.shape[2]), buffer(first_ck, first_ck.shape[2]))
            for _ in decoder.blocks
        ]
        self.tokens = torch.zeros(self.rows, 1, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.key_index = torch.arange(self.capacity, device=device)
        self._weights = decoder.token_embedding.weight.data_ptr()
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor]] = {}
        self.lock = threading.Lock()
        self.n = self.length = 0
        self.load(cache)

    def fits(self, model: Whisper, cache: KVCache, graphs: bool) -> bool:
        """Whether ``cache``'s batch can be loaded into these buffers (and graphs)."""
        key, cross_key = cache.self_kv[0][0], cache.cross_kv[0][0]
        mine, my_cross = self.self_kv[0][0], self.cross_kv[0][0]
        return (
            model is self.model
            and graphs == self.wants_graphs
            and model.decoder.token_embedding.weight.data_ptr() == self._weights
            and key.shape[0] <= self.rows
            and key.shape[1:2] + key.shape[3:] == mine.shape[1:2] + mine.shape[3:]
            and cross_key.shape[1:] == my_cross.shape[1:]
            and (key.dtype, key.device) == (mine.dtype, mine.device)
        )

    @torch.inference_mode()
    def load(self, cache: KVCache) -> None:
        """Copy a new batch's prefix K/V and cross-attention K/V into the buffers;
        ``cache`` is emptied (the buffers replace it)."""
        if cache.cross_group != 1:
            raise ValueError("StaticDecoder decodes one row per window (greedy)")
        length = cache.n_tokens
        n = cache.self_kv[0][0].shape[0]
        for layer, ((k_buf, v_buf), (ck_buf, cv_buf)) in enumerate(
            zip(self.self_kv, self.cross_kv, strict=True)
        ):
            key, value = cache.self_kv[layer]
            k_buf[:n, :, :length], v_buf[:n, :, :length] = key, value
            cross_key, cross_value = cache.cross_kv[layer]
            ck_buf[:n], cv_buf[:n] = cross_key, cross_value
        cache.self_kv.clear()
        cache.cross_kv.clear()
        self.n, self.length = n, length

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


# One kept decoder per model; it goes when the model does.
_KEPT: weakref.WeakKeyDictionary[Whisper, StaticDecoder] = weakref.WeakKeyDictionary()


def kept_decoder(model: Whisper) -> StaticDecoder | None:
    """The decoder :func:`static_decoder` keeps for ``model``, if any."""
    return _KEPT.get(model)


@contextlib.contextmanager
def static_decoder(
    model: Whisper, cache: KVCache, graphs: bool
) -> Iterator[StaticDecoder]:
    """A :class:`StaticDecoder` loaded with ``cache``'s batch, for one decode.

    Reuses the model's kept decoder (its buffers and captured graphs) when the batch
    fits it and no other thread holds it. Otherwise builds one, which replaces the
    kept one unless that was busy in another thread.
    """
    kept = _KEPT.get(model)
    busy = kept is not None and not kept.lock.acquire(blocking=False)
    if kept is not None and not busy:
        try:
            if kept.fits(model, cache, graphs):
                kept.load(cache)
                yield kept
                return
        finally:
            kept.lock.release()
    decoder = StaticDecoder(model, cache, graphs)
    with decoder.lock:
        if not busy:
            _KEPT[model] = decoder
        yield decoder
