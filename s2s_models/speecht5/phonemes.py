"""Phoneme front ends for our own SpeechT5-architecture voices.

A voice records its front end by name in ``phonemes.json`` (``front_end`` and the
ordered ``symbols``), and :meth:`PhonemeTokenizer.from_pretrained` rebuilds exactly
that front end, so a voice is always fed what it was trained on:

* ``phonemes`` (the default for new voices), stored as ``en-arpabet-v2``: English
  normalisation (``normalize.py``: numbers, dates, money, abbreviations, acronyms,
  URLs, markup...), then CMUdict, then the G2P model (``g2p.py``) for words CMUdict
  lacks;
* ``phonemes-v1``, stored as ``cmudict-arpabet`` (the first default voice): NFKC and
  typographic punctuation only, integers read out, CMUdict, unknown words spelled
  letter by letter;
* ``characters``: as ``phonemes-v1``, but each word is its lower-case letters.

Both phoneme front ends share one inventory: ARPAbet with stress digits (69
phonemes), punctuation tokens ``, . ? ! ; : -`` and a word-boundary token, so a
``cmudict-arpabet`` voice can be fed ``en-arpabet-v2`` symbols (and is not, unless its
``phonemes.json`` says so). In ``en-arpabet-v2`` a lone capital letter is read as its
letter name (the normaliser writes acronyms read as letters as "F B I"), except a
sentence-initial "A" before a lower-case word (the article).

The tokenizer has the interface of ``SpeechT5Tokenizer`` (``encode``,
``encode_batch``, ``vocabulary``, ``decode``, ``normalize_text``), so the synthesis
stages use either. Ids: ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3, then
the symbols in the order listed in the voice's ``phonemes.json``.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from pathlib import Path

from .lexicon import LETTER_NAMES, LEXICON_FILE, PHONEMES, Lexicon, plural_suffix
from .normalize import TextRefused, normalize_english
from .numbers import number_words
from .tokenizer import EncodedBatch, EncodedText, normalize_text, pad_batch

SYMBOLS_FILE = "phonemes.json"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
FRONT_ENDS = {
    "phonemes": "en-arpabet-v2",
    "phonemes-v1": "cmudict-arpabet",
    "characters": "characters",
}
DEFAULT_FRONT_END = "phonemes"
WORD_BOUNDARY = " "
PUNCTUATION = [",", ".", "?", "!", ";", ":", "-"]
LETTERS = list(string.ascii_lowercase) + ["'"]
# Characters the front end reads; normalize_text maps or removes anything else.
VOCABULARY = frozenset(
    string.ascii_letters + string.digits + " '" + "".join(PUNCTUATION)
)
_TOKEN = re.compile(
    r"[A-Za-z]+(?:'[A-Za-z]+)*|\d+|[" + re.escape("".join(PUNCTUATION)) + "]"
)
_SENTENCE_ENDS = (".", "?", "!")
__all__ = ["LETTER_NAMES", "LEXICON_FILE", "PHONEMES", "Lexicon", "TextRefused",
           "number_words"]  # fmt: skip


def text_to_symbols(text: str, lexicon: Lexicon | None) -> tuple[list[str], list[str]]:
    """Normalised text -> symbols, and the words that had to be spelled out.

    Without a lexicon, a word's symbols are its lower-cased characters."""
    symbols: list[str] = []
    spelled: list[str] = []
    for token in _TOKEN.findall(text):
        if token.isdigit():  # cmudict-arpabet read 13 digits and more one by one
            token_words = number_words(int(token), 10**12).split()
        elif token[0].isalpha():
            token_words = [token]
        else:
            symbols.append(token)
            continue
        for word in token_words:
            if lexicon is None:
                phones = list(word.lower())
            elif (phones := lexicon.lookup(word)) is None:
                spelled.append(word)
                phones = lexicon.spell(word)
            if symbols and symbols[-1] != WORD_BOUNDARY:
                symbols.append(WORD_BOUNDARY)
            symbols.extend(phones)
            symbols.append(WORD_BOUNDARY)
    while symbols and symbols[-1] == WORD_BOUNDARY:
        symbols.pop()
    return symbols, spelled


def _append_word(symbols: list[str], phones: list[str]) -> None:
    if symbols and symbols[-1] != WORD_BOUNDARY:
        symbols.append(WORD_BOUNDARY)
    symbols.extend(phones)
    symbols.append(WORD_BOUNDARY)


def _letter_phones(word: str, prev: str | None, next_: str | None) -> list[str] | None:
    """A lone capital ("F" of "F B I") or a capital with 's ("O's") read as its letter
    name; None for other words, and for "A" as the article (sentence-initial before
    a lower-case word)."""
    if not re.fullmatch(r"[A-Z](?:'s)?", word):
        return None
    if word == "A" and (prev is None or prev in _SENTENCE_ENDS) \
            and next_ is not None and next_[:1].islower():  # fmt: skip
        return None
    phones = LETTER_NAMES[word[0].lower()].split()
    return phones + (plural_suffix(phones) if word.endswith("'s") else [])


def text_to_phonemes(text: str, lexicon: Lexicon, guess) -> tuple[list[str], list[str]]:
    """Normalised text -> ``en-arpabet-v2`` symbols, and the words the G2P guessed.

    ``guess`` maps a list of words to their phoneme lists (``G2P.predict``); words
    are looked up in ``lexicon`` first, lone capitals are letter names, and a word
    the G2P returns nothing for is spelled."""
    tokens = _TOKEN.findall(text)
    words = [t for t in tokens if t[0].isalpha()]
    unknown = sorted({w.lower() for w in words if _letter_phones(w, None, None) is None
                      and lexicon.lookup(w) is None})  # fmt: skip
    guessed = dict(zip(unknown, guess(unknown), strict=True)) if unknown else {}
    symbols: list[str] = []
    for i, token in enumerate(tokens):
        if token in PUNCTUATION:
            symbols.append(token)
            continue
        if token.isdigit():  # the normaliser leaves none; read them all the same
            for word in number_words(int(token)).split():
                _append_word(symbols, lexicon.lookup(word) or lexicon.spell(word))
            continue
        prev = tokens[i - 1] if i else None
        next_ = tokens[i + 1] if i + 1 < len(tokens) else None
        phones = _letter_phones(token, prev, next_) or lexicon.lookup(token)
        if phones is None:
            phones = guessed.get(token.lower()) or lexicon.spell(token)
        _append_word(symbols, phones)
    while symbols and symbols[-1] == WORD_BOUNDARY:
        symbols.pop()
    return symbols, unknown


class PhonemeTokenizer:
    """Text -> symbol ids for a voice folder that has ``phonemes.json``; the front
    end is one of the keys of ``FRONT_ENDS`` (see the module docstring)."""

    def __init__(self, symbols: Sequence[str], front_end: str = DEFAULT_FRONT_END):
        if front_end not in FRONT_ENDS:
            raise ValueError(f"front end must be one of {sorted(FRONT_ENDS)}")
        self.front_end = front_end
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.bos_id, self.pad_id = self.index["<s>"], self.index["<pad>"]
        self.eos_id, self.unk_id = self.index["</s>"], self.index["<unk>"]
        self.vocabulary = VOCABULARY
        phonemes = front_end != "characters"
        self.lexicon = Lexicon.bundled() if phonemes else None
        units = set(PHONEMES if phonemes else LETTERS)
        self.unit_ids = frozenset(i for s, i in self.index.items() if s in units)

    @property
    def name(self) -> str:
        """The front end's stored name (``phonemes.json``), e.g. en-arpabet-v2."""
        return FRONT_ENDS[self.front_end]

    @classmethod
    def default_symbols(cls, front_end: str = DEFAULT_FRONT_END) -> list[str]:
        units = LETTERS if front_end == "characters" else PHONEMES
        return SPECIALS + [WORD_BOUNDARY] + PUNCTUATION + units

    @classmethod
    def for_front_end(cls, front_end: str = DEFAULT_FRONT_END) -> PhonemeTokenizer:
        """A new voice's tokenizer."""
        return cls(cls.default_symbols(front_end), front_end)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> PhonemeTokenizer:
        """The front end a voice folder's ``phonemes.json`` names (a file without a
        name is the first front end, ``cmudict-arpabet``)."""
        config = json.loads((Path(model_dir) / SYMBOLS_FILE).read_text())
        stored = config.get("front_end", FRONT_ENDS["phonemes-v1"])
        names = {v: k for k, v in FRONT_ENDS.items()}
        if stored not in names:
            raise ValueError(
                f"{model_dir}/{SYMBOLS_FILE}: unknown front end {stored!r}"
            )
        return cls(config["symbols"], names[stored])

    def save(self, model_dir: str | Path) -> None:
        payload = {"front_end": self.name, "symbols": self.symbols}
        (Path(model_dir) / SYMBOLS_FILE).write_text(json.dumps(payload, indent=1))

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize_text(self, text: str) -> tuple[str, list[str]]:
        """The text the voice is asked to say, and the characters removed as unknown.

        Raises ``TextRefused`` (a ValueError) for text ``en-arpabet-v2`` will not
        read (mostly markup)."""
        if self.front_end == "phonemes":
            text = normalize_english(text, self.lexicon)
        return normalize_text(text, self.vocabulary)

    def symbolize(self, normalized: str) -> list[str]:
        """Normalised text -> this front end's symbols (word boundary = " ")."""
        if self.front_end == "phonemes":
            from .g2p import G2P  # loaded on first use: a few MB of weights

            return text_to_phonemes(normalized, self.lexicon, G2P.bundled().predict)[0]
        return text_to_symbols(normalized, self.lexicon)[0]

    def encode(self, text: str) -> EncodedText:
        normalized, unknown = self.normalize_text(text)
        ids = [self.index.get(s, self.unk_id) for s in self.symbolize(normalized)]
        return EncodedText(ids + [self.eos_id], normalized, unknown)

    def encode_batch(self, texts: Sequence[str]) -> EncodedBatch:
        return pad_batch([self.encode(t) for t in texts], self.pad_id)

    def count_units(self, ids: Sequence[int]) -> int:
        """Phonemes (or letters) among ``ids``: what speech duration scales with."""
        return sum(1 for i in ids if i in self.unit_ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids back to space-separated symbols ('|' for a word boundary)."""
        specials = {self.bos_id, self.pad_id, self.eos_id}
        out = [self.symbols[i] for i in ids if i not in specials]
        return " ".join("|" if s == WORD_BOUNDARY else s for s in out)
