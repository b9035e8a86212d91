"""Grapheme-to-phoneme model: the pronunciation of a word the lexicon lacks.

A small transformer encoder-decoder, trained by this project on the CMU Pronouncing
Dictionary (``bench/train_g2p.py``; the choice against other G2P systems is measured in
``bench/bench_g2p.py`` and ``bench/RESULTS_G2P.md``). Letters in, ARPAbet phonemes with
stress digits out, the same symbols as the lexicon, so a voice never sees a new symbol.

The bundled weights (``g2p/model.safetensors`` and ``g2p/config.json`` beside this file)
load with :meth:`G2P.bundled`; nothing is downloaded. Decoding is greedy and batched;
words are short (at most ``max_letters`` letters), so each step re-runs the decoder over
the whole prefix instead of keeping a KV cache.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

G2P_DIR = Path(__file__).parent / "g2p"
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3 in both vocabularies
PAD, BOS, EOS, UNK = range(4)


@dataclass(frozen=True)
class G2PDims:
    letters: tuple[str, ...]  # input symbols after SPECIALS
    phonemes: tuple[str, ...]  # output symbols after SPECIALS
    n_state: int = 256
    n_head: int = 4
    n_ffn: int = 1024
    n_encoder_layer: int = 3
    n_decoder_layer: int = 3
    max_letters: int = 32  # longer words are cut (the lexicon spells them instead)
    max_phonemes: int = 40

    def verify(self) -> None:
        if self.n_state % self.n_head:
            raise ValueError("n_state must be divisible by n_head")
        if len(set(self.letters)) != len(self.letters) or not self.letters:
            raise ValueError("letters must be distinct and non-empty")
        if len(set(self.phonemes)) != len(self.phonemes) or not self.phonemes:
            raise ValueError("phonemes must be distinct and non-empty")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> G2PDims:
        values = dict(values)
        values["letters"] = tuple(values["letters"])
        values["phonemes"] = tuple(values["phonemes"])
        return cls(**values)


def _positions(length: int, channels: int) -> Tensor:
    """Sinusoidal position table (length, channels): sin half, then cos half."""
    inv = torch.exp(-math.log(10000.0) * torch.arange(channels // 2) / (channels // 2))
    angles = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class G2PModel(nn.Module):
    """Letters -> phoneme logits; pre-norm ``nn.Transformer`` layers."""

    def __init__(self, dims: G2PDims):
        super().__init__()
        dims.verify()
        self.dims = dims
        d = dims.n_state
        self.letter_embedding = nn.Embedding(len(SPECIALS) + len(dims.letters), d)
        self.phoneme_embedding = nn.Embedding(len(SPECIALS) + len(dims.phonemes), d)
        n_pos = max(dims.max_letters, dims.max_phonemes) + 2
        self.register_buffer("positions", _positions(n_pos, d), persistent=False)

        def layer(kind):
            return kind(d, dims.n_head, dims.n_ffn, dropout=0.1, batch_first=True,
                        norm_first=True)  # fmt: skip

        self.encoder = nn.TransformerEncoder(
            layer(nn.TransformerEncoderLayer), dims.n_encoder_layer,
            norm=nn.LayerNorm(d), enable_nested_tensor=False,
        )  # fmt: skip
        self.decoder = nn.TransformerDecoder(
            layer(nn.TransformerDecoderLayer), dims.n_decoder_layer,
            norm=nn.LayerNorm(d),
        )  # fmt: skip
        self.out = nn.Linear(d, self.phoneme_embedding.num_embeddings)

    def _embed(self, table: nn.Embedding, ids: Tensor) -> Tensor:
        scale = math.sqrt(self.dims.n_state)
        return table(ids) * scale + self.positions[: ids.shape[1]]

    def encode(self, letters: Tensor) -> Tensor:
        """(batch, n_letters) ids, PAD-padded -> (batch, n_letters, n_state)."""
        x = self._embed(self.letter_embedding, letters)
        return self.encoder(x, src_key_padding_mask=letters == PAD)

    def decode(self, memory: Tensor, letters: Tensor, prefix: Tensor) -> Tensor:
        """Logits (batch, n_prefix, n_phoneme_ids) for the next phoneme after each
        position of ``prefix`` (batch, n_prefix), which starts with BOS."""
        n = prefix.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=prefix.device).triu(1)
        x = self.decoder(
            self._embed(self.phoneme_embedding, prefix), memory, tgt_mask=causal,
            tgt_key_padding_mask=prefix == PAD, memory_key_padding_mask=letters == PAD,
        )  # fmt: skip
        return self.out(x)

    def forward(self, letters: Tensor, prefix: Tensor) -> Tensor:
        """Teacher-forced logits (batch, n_prefix, n_phoneme_ids)."""
        return self.decode(self.encode(letters), letters, prefix)


class G2P:
    """A trained :class:`G2PModel` with its symbol tables: words -> ARPAbet."""

    def __init__(self, model: G2PModel):
        self.model = model.eval()
        dims = model.dims
        self.letter_ids = {c: i for i, c in enumerate(SPECIALS + dims.letters)}
        self.phonemes = SPECIALS + dims.phonemes

    @classmethod
    @functools.cache
    def bundled(cls) -> G2P:
        """The model shipped beside this file (loaded once per process)."""
        return cls.load(G2P_DIR)

    @classmethod
    def load(cls, folder: str | Path) -> G2P:
        """From ``config.json`` + ``model.safetensors``; every tensor must match."""
        from safetensors.torch import load_file

        folder = Path(folder)
        dims = G2PDims.from_dict(json.loads((folder / "config.json").read_text()))
        model = G2PModel(dims)
        state = load_file(folder / "model.safetensors")
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        return cls(model)

    def encode_words(self, words: Sequence[str]) -> Tensor:
        """(batch, n_letters) ids of lower-cased words, </s> after each, PAD-padded;
        letters outside the model's alphabet become <unk>."""
        limit = self.model.dims.max_letters
        rows = [[self.letter_ids.get(c, UNK) for c in w.lower()[:limit]] + [EOS]
                for w in words]  # fmt: skip
        out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out

    @torch.inference_mode()
    def predict(self, words: Sequence[str], batch_size: int = 256) -> list[list[str]]:
        """Greedy pronunciation of each word: a list of ARPAbet symbols (empty if
        the model ends the word at once; the caller then spells it)."""
        out: list[list[str]] = []
        for start in range(0, len(words), batch_size):
            out += self._predict_batch(words[start : start + batch_size])
        return out

    def _predict_batch(self, words: Sequence[str]) -> list[list[str]]:
        if not words:
            return []
        letters = self.encode_words(words)  # (batch, n_letters)
        memory = self.model.encode(letters)  # (batch, n_letters, n_state)
        batch = letters.shape[0]
        prefix = torch.full((batch, 1), BOS, dtype=torch.long)
        done = torch.zeros(batch, dtype=torch.bool)
        # a word has at most a few more phonemes than letters ("x": EH1 K S)
        n_steps = min(self.model.dims.max_phonemes, letters.shape[1] + 4)
        for _ in range(n_steps):
            logits = self.model.decode(memory, letters, prefix)[:, -1]
            logits[:, :EOS] = -math.inf  # never PAD or BOS
            logits[:, UNK] = -math.inf
            nxt = logits.argmax(-1).masked_fill(done, PAD)  # (batch,)
            prefix = torch.cat([prefix, nxt[:, None]], dim=1)
            done |= nxt == EOS
            if bool(done.all()):
                break
        return [[self.phonemes[i] for i in row[1:].tolist() if i > UNK]
                for row in prefix]  # fmt: skip
