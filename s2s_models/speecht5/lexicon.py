"""The pronunciation lexicon: the CMU Pronouncing Dictionary (BSD-style licence,
shipped gzipped in ``cmudict/`` beside this file), ARPAbet with stress digits, and the
letter names used to read a word letter by letter."""

from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path

LEXICON_FILE = Path(__file__).parent / "cmudict" / "cmudict.dict.gz"
VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()
CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
PHONEMES = [v + s for v in VOWELS for s in "012"] + CONSONANTS
LETTER_NAMES = {
    "a": "EY1", "b": "B IY1", "c": "S IY1", "d": "D IY1", "e": "IY1", "f": "EH1 F",
    "g": "JH IY1", "h": "EY1 CH", "i": "AY1", "j": "JH EY1", "k": "K EY1",
    "l": "EH1 L", "m": "EH1 M", "n": "EH1 N", "o": "OW1", "p": "P IY1",
    "q": "K Y UW1", "r": "AA1 R", "s": "EH1 S", "t": "T IY1", "u": "Y UW1",
    "v": "V IY1", "w": "D AH1 B AH0 L Y UW0", "x": "EH1 K S", "y": "W AY1",
    "z": "Z IY1",
}  # fmt: skip
_SIBILANTS = ("S", "Z", "SH", "CH", "JH", "ZH")


def plural_suffix(phones: list[str]) -> list[str]:
    """The -s / -'s ending after ``phones``: IH0 Z after a sibilant, else Z (S after
    a voiceless consonant)."""
    if phones[-1] in _SIBILANTS:
        return ["IH0", "Z"]
    return ["S"] if phones[-1] in ("P", "T", "K", "F", "TH") else ["Z"]


def spell(word: str) -> list[str]:
    """Letter names of the letters of ``word`` (other characters are skipped)."""
    return [p for ch in word.lower() if ch in LETTER_NAMES
            for p in LETTER_NAMES[ch].split()]  # fmt: skip


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

    def lookup(self, word: str) -> list[str] | None:
        word = word.lower()
        found = self.entries.get(word)
        if found is None and word.endswith("'s"):  # possessive of a known word
            stem = self.entries.get(word[:-2])
            if stem is not None:
                found = stem + (["IH0", "Z"] if stem[-1] in _SIBILANTS else ["Z"])
        return found

    def spell(self, word: str) -> list[str]:
        return spell(word)

    def is_spelled(self, word: str) -> bool:
        """CMUdict reads ``word`` letter by letter (an acronym entry such as "fbi")."""
        phones = self.lookup(word)
        if phones is None:
            return False
        letters = spell(re.sub(r"'?s$", "", word.lower()) or word)
        strip = [re.sub(r"\d", "", p) for p in phones[: len(letters)]]
        return strip == [re.sub(r"\d", "", p) for p in letters]
