"""Phoneme front end for our own SpeechT5-architecture voices.

Text -> ARPAbet phonemes (with stress digits) from the CMU Pronouncing Dictionary
(BSD-style licence, shipped gzipped in ``cmudict/`` beside this file), punctuation kept
as tokens and a word-boundary token between words. A word the dictionary lacks is
spelled letter by letter, and integers are read out as English words first, so every
input maps to symbols the voice was trained on: nothing is silently dropped.

The same tokenizer has a second front end, ``characters``: the lower-cased letters and
apostrophes of each word (numbers read out the same way), with the same punctuation and
word-boundary tokens. It exists to measure what the phonemes buy (``s2s train-tts
--front-end characters``); a voice records its front end in ``phonemes.json``.

The tokenizer has the interface of ``SpeechT5Tokenizer`` (``encode``,
``encode_batch``, ``vocabulary``, ``decode``), so the synthesis stages use either. Ids:
``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3, then the symbols in the order
listed in the voice's ``phonemes.json``.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import string
from collections.abc import Sequence
from pathlib import Path

from .tokenizer import EncodedBatch, EncodedText, normalize_text, pad_batch

LEXICON_FILE = Path(__file__).parent / "cmudict" / "cmudict.dict.gz"
SYMBOLS_FILE = "phonemes.json"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
FRONT_ENDS = {"phonemes": "cmudict-arpabet", "characters": "characters"}
WORD_BOUNDARY = " "
PUNCTUATION = [",", ".", "?", "!", ";", ":", "-"]
_VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()
_CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
PHONEMES = [v + s for v in _VOWELS for s in "012"] + _CONSONANTS
LETTERS = list(string.ascii_lowercase) + ["'"]
LETTER_NAMES = {
    "a": "EY1",
    "b": "B IY1",
    "c": "S IY1",
    "d": "D IY1",
    "e": "IY1",
    "f": "EH1 F",
    "g": "JH IY1",
    "h": "EY1 CH",
    "i": "AY1",
    "j": "JH EY1",
    "k": "K EY1",
    "l": "EH1 L",
    "m": "EH1 M",
    "n": "EH1 N",
    "o": "OW1",
    "p": "P IY1",
    "q": "K Y UW1",
    "r": "AA1 R",
    "s": "EH1 S",
    "t": "T IY1",
    "u": "Y UW1",
    "v": "V IY1",
    "w": "D AH1 B AH0 L Y UW0",
    "x": "EH1 K S",
    "y": "W AY1",
    "z": "Z IY1",
}
# Characters the front end reads; normalize_text maps or removes anything else.
VOCABULARY = frozenset(
    string.ascii_letters + string.digits + " '" + "".join(PUNCTUATION)
)
_TOKEN = re.compile(
    r"[A-Za-z]+(?:'[A-Za-z]+)*|\d+|[" + re.escape("".join(PUNCTUATION)) + "]"
)
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]


def number_words(n: int) -> str:
    """A non-negative integer in English words: 1905 -> 'one thousand nine hundred
    five'. Numbers of 13 digits or more are read digit by digit."""
    if n >= 10**12:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            words = f"{number_words(head)} {name}"
            return words if rest == 0 else f"{words} {number_words(rest)}"
    raise AssertionError("unreachable")


class Lexicon:
    """Word -> phoneme list, first pronunciation of each CMUdict entry."""

    def __init__(self, entries: dict[str, list[str]]):
        self.entries = entries

    @classmethod
    @functools.cache
    def bundled(cls) -> Lexicon:
        entries: dict[str, list[str]] = {}
        with gzip.open(LEXICON_FILE, "rt", encoding="utf-8") as f:
            for line in f:
                body = line.split("#", 1)[0].split()
                if len(body) < 2 or "(" in body[0]:  # "(2)": an alternative
                    continue
                entries.setdefault(body[0], body[1:])
        return cls(entries)

    @staticmethod
    def words(text: str) -> list[str]:
        return [t for t in _TOKEN.findall(text) if t[0].isalpha()]

    def lookup(self, word: str) -> list[str] | None:
        word = word.lower()
        found = self.entries.get(word)
        if found is None and word.endswith("'s"):  # possessive of a known word
            stem = self.entries.get(word[:-2])
            if stem is not None:
                found = stem + (
                    ["IH0", "Z"]
                    if stem[-1] in ("S", "Z", "SH", "CH", "JH", "ZH")
                    else ["Z"]
                )
        return found

    def spell(self, word: str) -> list[str]:
        return [
            p
            for ch in word.lower()
            if ch in LETTER_NAMES
            for p in LETTER_NAMES[ch].split()
        ]


def text_to_symbols(text: str, lexicon: Lexicon | None) -> tuple[list[str], list[str]]:
    """Normalised text -> symbols, and the words that had to be spelled out.

    Without a lexicon, a word's symbols are its lower-cased characters."""
    symbols: list[str] = []
    spelled: list[str] = []
    for token in _TOKEN.findall(text):
        if token.isdigit():
            token_words = number_words(int(token)).split()
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


class PhonemeTokenizer:
    """Text -> symbol ids for a voice folder that has ``phonemes.json``: phonemes, or
    characters with ``front_end="characters"``."""

    def __init__(self, symbols: Sequence[str], front_end: str = "phonemes"):
        if front_end not in FRONT_ENDS:
            raise ValueError(f"front end must be one of {sorted(FRONT_ENDS)}")
        self.front_end = front_end
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.bos_id, self.pad_id = self.index["<s>"], self.index["<pad>"]
        self.eos_id, self.unk_id = self.index["</s>"], self.index["<unk>"]
        self.vocabulary = VOCABULARY
        self.lexicon = Lexicon.bundled() if front_end == "phonemes" else None

    @classmethod
    def default_symbols(cls, front_end: str = "phonemes") -> list[str]:
        units = PHONEMES if front_end == "phonemes" else LETTERS
        return SPECIALS + [WORD_BOUNDARY] + PUNCTUATION + units

    @classmethod
    def for_front_end(cls, front_end: str) -> PhonemeTokenizer:
        """A new voice's tokenizer."""
        return cls(cls.default_symbols(front_end), front_end)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> PhonemeTokenizer:
        config = json.loads((Path(model_dir) / SYMBOLS_FILE).read_text())
        stored = config.get("front_end", FRONT_ENDS["phonemes"])
        names = {v: k for k, v in FRONT_ENDS.items()}
        if stored not in names:
            raise ValueError(
                f"{model_dir}/{SYMBOLS_FILE}: unknown front end {stored!r}"
            )
        return cls(config["symbols"], names[stored])

    def save(self, model_dir: str | Path) -> None:
        payload = {"front_end": FRONT_ENDS[self.front_end], "symbols": self.symbols}
        (Path(model_dir) / SYMBOLS_FILE).write_text(json.dumps(payload, indent=1))

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize_text(self, text: str) -> tuple[str, list[str]]:
        return normalize_text(text, self.vocabulary)

    def encode(self, text: str) -> EncodedText:
        normalized, unknown = self.normalize_text(text)
        symbols, _ = text_to_symbols(normalized, self.lexicon)
        ids = [self.index.get(s, self.unk_id) for s in symbols]
        return EncodedText(ids + [self.eos_id], normalized, unknown)

    def encode_batch(self, texts: Sequence[str]) -> EncodedBatch:
        return pad_batch([self.encode(t) for t in texts], self.pad_id)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids back to space-separated symbols ('|' for a word boundary)."""
        specials = {self.bos_id, self.pad_id, self.eos_id}
        out = [self.symbols[i] for i in ids if i not in specials]
        return " ".join("|" if s == WORD_BOUNDARY else s for s in out)
