"""SpeechT5's character tokenizer (SentencePiece ``spm_char.model``), with the text
normalisation we apply before it.

Ids follow the published model: ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2,
``<unk>`` = 3, then one id per character; ``encode`` appends ``</s>``. A character that
the vocabulary lacks would become ``<unk>``; instead we remove it and report it, so the
caller can decide (spell out numbers, transliterate, or accept the loss). Numbers are
not expanded here: digits outside the vocabulary are reported like any other character.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

SPACE_PIECE = "\u2581"  # SentencePiece's visible space, "▁"
VOCAB_FILE = "spm_char.model"

# Typographic characters that NFKC leaves alone, mapped to the ASCII the model knows.
PUNCTUATION_MAP = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote / apostrophe
    "\u201a": ",",  # low single quote
    "\u201b": "'",
    "\u2032": "'",  # prime
    "\u00b4": "'",  # acute accent used as apostrophe
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2212": "-",  # minus sign
}


def normalize_text(
    text: str, vocabulary: Collection[str] | None = None
) -> tuple[str, list[str]]:
    """NFKC, typographic punctuation -> ASCII, whitespace collapsed and stripped.

    With a ``vocabulary`` (set of single characters, space included), a letter missing
    from it falls back to its other case or its unaccented form when one of those is
    known, and every remaining unknown character is removed. Returns the text and the
    unknown characters (each once, in order of first appearance).
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(PUNCTUATION_MAP.get(ch, ch) for ch in text)
    text = " ".join(text.split())
    if vocabulary is None:
        return text, []
    kept, unknown = [], []
    for ch in text:
        if ch not in vocabulary:
            known = [c for c in _fallbacks(ch) if c in vocabulary]
            if not known:
                if ch not in unknown:
                    unknown.append(ch)
                continue
            ch = known[0]
        kept.append(ch)
    return " ".join("".join(kept).split()), unknown


def _fallbacks(ch: str) -> list[str]:
    """Stand-ins for a character the vocabulary lacks: other case, then the letter
    without its accents (NFKD minus combining marks), then that one's other case."""
    bare = "".join(
        c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
    )
    options = [ch.lower(), ch.upper(), bare, bare.lower(), bare.upper()]
    return [c for c in options if len(c) == 1 and c != ch]


class EncodedText(NamedTuple):
    ids: list[int]  # token ids, </s> last
    text: str  # the normalised text that was encoded
    unknown_chars: list[str]  # removed because the vocabulary lacks them


class EncodedBatch(NamedTuple):
    input_ids: Tensor  # (batch, n_text) int64, right-padded with pad_id
    attention_mask: Tensor  # (batch, n_text) int64, 1 = real token
    unknown_chars: list[list[str]]  # per text


def pad_ids(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad token id lists: (batch, n_text) int64 ids and attention mask."""
    n_text = max(len(seq) for seq in ids)
    input_ids = torch.full((len(ids), n_text), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(ids), n_text, dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention_mask[i, : len(seq)] = 1
    return input_ids, attention_mask


def pad_batch(encoded: Sequence[EncodedText], pad_id: int) -> EncodedBatch:
    """Right-pad encoded texts into (batch, n_text) ids and attention mask."""
    input_ids, attention_mask = pad_ids([e.ids for e in encoded], pad_id)
    return EncodedBatch(input_ids, attention_mask, [e.unknown_chars for e in encoded])


class SpeechT5Tokenizer:
    """Character tokenizer over a SentencePiece model (needs ``sentencepiece``)."""

    def __init__(self, model_file: str | Path):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.bos_id = self.sp.bos_id()
        self.pad_id = self.sp.pad_id()
        self.eos_id = self.sp.eos_id()
        self.unk_id = self.sp.unk_id()
        pieces = (self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size()))
        chars = {p for p in pieces if len(p) == 1}
        if SPACE_PIECE in chars:
            chars.add(" ")
        self.vocabulary: frozenset[str] = frozenset(chars)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> SpeechT5Tokenizer:
        """From a Hugging Face ``microsoft/speecht5_tts`` folder (spm_char.model)."""
        return cls(Path(model_dir) / VOCAB_FILE)

    def normalize_text(self, text: str) -> tuple[str, list[str]]:
        """Normalised text and the characters removed as unknown."""
        return normalize_text(text, self.vocabulary)

    def encode(self, text: str) -> EncodedText:
        normalized, unknown = self.normalize_text(text)
        ids = self.sp.encode(normalized) if normalized else []
        return EncodedText(list(ids) + [self.eos_id], normalized, unknown)

    def encode_batch(self, texts: Sequence[str]) -> EncodedBatch:
        """Encode and right-pad a batch of texts."""
        return pad_batch([self.encode(t) for t in texts], self.pad_id)

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids back to text; special tokens are dropped."""
        specials = {self.bos_id, self.pad_id, self.eos_id}
        return self.sp.decode([i for i in ids if i not in specials])
