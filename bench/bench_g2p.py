"""Grapheme-to-phoneme systems against the CMU Pronouncing Dictionary.

Which G2P should pronounce the words our lexicon lacks? Each candidate predicts words
whose CMUdict pronunciation it should not have been trained on, and is scored against
CMUdict: phoneme error rate (edit distance / reference length, against the closest of
the word's CMUdict pronunciations) and word error rate (words with any error), with and
without stress. IPA systems are mapped to ARPAbet first (``IPA_TO_ARPABET``); a primary
or secondary stress mark gives the next vowel stress 1 or 2, other vowels get 0.

Test sets, listed in ``bench/g2p_heldout.txt`` (``SET<TAB>word``):

* ``new``: the words of our bundled CMUdict that gruut's English lexicon lacks, less
  those CMUdict reads letter by letter (acronyms, which the normaliser handles): later
  additions such as British place names and brands. As far as we
  can tell no candidate has seen them;
* ``random``: 3,000 other CMUdict words drawn at random (seed 19): mostly names and rare
  words, as CMUdict is. Our own model never trained on them (``bench/train_g2p.py``
  excludes both sets), but gruut's CRF and g2p-en's network were trained on CMUdict,
  so their ``random`` scores are optimistic.

Candidates (each optional: a missing package skips its row):

* ``ours``: ``s2s_models.speecht5.g2p`` (bundled weights, or ``--ours DIR``);
* ``gruut``: the CRF of ``gruut-lang-en`` (MIT), called without gruut's lexicon;
* ``g2p-en``: g2p-en's GRU (Apache-2.0), called without its lexicon (its import tries
  to download NLTK data; the bench disables that);
* ``espeak``: espeak-ng's rules and dictionary, through the ``espeakbridge`` that
  ``piper-tts`` ships (GPL-3.0): the phonemizer of the Piper teacher voice.

    python bench/bench_g2p.py --extra-path /tmp/g2pc --json g2p.json
    python bench/bench_g2p.py --make-split --extra-path /tmp/g2pc  # rewrites the sets
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2s_models.speecht5.phonemes import LEXICON_FILE  # noqa: E402

SPLIT_FILE = Path(__file__).with_name("g2p_heldout.txt")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW",
          "OY", "UH", "UW"}  # fmt: skip
# IPA (as gruut and espeak-ng write US English) -> ARPAbet without stress, longest
# match first. Flaps and glottal stops become T (CMUdict writes T or D there);
# syllabic consonants get CMUdict's AH0 before them.
IPA_TO_ARPABET = {
    "aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "əʊ": "OW", "ɔɪ": "OY",
    "ɑː": "AA", "ɑ": "AA", "ɒ": "AA", "a": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH",
    "ɐ": "AH", "ɔː": "AO", "ɔ": "AO", "oː": "AO", "o": "OW", "ɛ": "EH", "e": "EH",
    "ɚ": "ER", "ɝ": "ER", "ɜː": "ER", "ɜ": "ER", "ɪ": "IH", "ᵻ": "IH", "iː": "IY",
    "i": "IY", "ʊ": "UH", "uː": "UW", "u": "UW",
    "tʃ": "CH", "dʒ": "JH", "ʃ": "SH", "ʒ": "ZH", "θ": "TH", "ð": "DH", "ŋ": "NG",
    "ɹ": "R", "r": "R", "ɾ": "T", "ʔ": "T", "j": "Y", "h": "HH", "x": "K", "ç": "HH",
    "ɡ": "G", "g": "G", "l̩": "AH L", "n̩": "AH N", "m̩": "AH M", "p": "P", "b": "B",
    "t": "T", "d": "D", "k": "K", "f": "F", "v": "V", "s": "S", "z": "Z", "m": "M",
    "n": "N", "l": "L", "w": "W",
}  # fmt: skip
_IPA_KEYS = sorted(IPA_TO_ARPABET, key=len, reverse=True)


def read_cmudict() -> dict[str, list[list[str]]]:
    """Every pronunciation of every plain word (letters, one inner apostrophe)."""
    out: dict[str, list[list[str]]] = {}
    with gzip.open(LEXICON_FILE, "rt", encoding="utf-8") as f:
        for line in f:
            body = line.split("#", 1)[0].split()
            if len(body) < 2:
                continue
            word = re.sub(r"\(\d+\)$", "", body[0])
            if WORD.fullmatch(word):
                out.setdefault(word, []).append(body[1:])
    return out


def read_split() -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for line in SPLIT_FILE.read_text().splitlines():
        name, word = line.split("\t")
        sets.setdefault(name, []).append(word)
    return sets


def make_split(lexicon: dict[str, list[list[str]]], n_random: int = 3000) -> None:
    import sqlite3

    from gruut_lang_en import get_lang_dir

    db = sqlite3.connect(Path(get_lang_dir()) / "lexicon.db")
    known = {w for (w,) in db.execute("select word from word_phonemes")}
    new = sorted(w for w in lexicon if w not in known and not _spelled(w, lexicon))
    rest = sorted(w for w in lexicon if w in known)
    drawn = sorted(random.Random(19).sample(rest, n_random))
    lines = [f"new\t{w}" for w in new] + [f"random\t{w}" for w in drawn]
    SPLIT_FILE.write_text("\n".join(lines) + "\n")
    print(f"{SPLIT_FILE}: {len(new)} new, {len(drawn)} random")


def _spelled(word: str, lexicon: dict[str, list[list[str]]]) -> bool:
    """CMUdict reads the word letter by letter (an acronym such as "bbc's"): the
    normaliser, not the G2P, handles those."""
    from s2s_models.speecht5.phonemes import LETTER_NAMES

    stem = re.sub(r"'?s$", "", word) or word
    letters = [re.sub(r"\d", "", p) for c in stem for p in LETTER_NAMES[c].split()]
    first = [re.sub(r"\d", "", p) for p in lexicon[word][0]]
    return first[: len(letters)] == letters


def ipa_to_arpabet(phones: str) -> list[str]:
    """An IPA string -> ARPAbet with stress on vowels (the mark before a vowel's
    syllable stresses that vowel)."""
    out, stress, i = [], "0", 0
    phones = phones.replace("ː", "ː")
    while i < len(phones):
        ch = phones[i]
        if ch in "ˈˌ":
            stress = "1" if ch == "ˈ" else "2"
            i += 1
            continue
        key = next((k for k in _IPA_KEYS if phones.startswith(k, i)), None)
        if key is None:  # length marks, ties, unknown symbols: skipped
            i += 1
            continue
        for p in IPA_TO_ARPABET[key].split():
            if p in VOWELS:
                out.append(p + (stress if key not in ("l̩", "n̩", "m̩") else "0"))
                stress = "0"
            else:
                out.append(p)
        i += len(key)
    return out


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def score(preds: list[list[str]], refs: list[list[list[str]]], stress: bool) -> dict:
    def norm(p):
        return p if stress else [re.sub(r"\d", "", x) for x in p]

    errors = length = wrong = 0
    for pred, variants in zip(preds, refs, strict=True):
        dist, ref = min((edit_distance(norm(pred), norm(v)), v) for v in variants)
        errors, length, wrong = errors + dist, length + len(ref), wrong + (dist > 0)
    return {"per": errors / length, "wer": wrong / len(preds)}


# ---------------------------------------------------------------- candidates


def cand_ours(args):
    from s2s_models.speecht5.g2p import G2P

    g2p = G2P.load(args.ours) if args.ours else G2P.bundled()
    return lambda words: g2p.predict(words)


def cand_gruut(args):
    from gruut.g2p import GraphemesToPhonemes
    from gruut_lang_en import get_lang_dir

    crf = GraphemesToPhonemes(Path(get_lang_dir()) / "g2p" / "model.crf")
    return lambda words: [ipa_to_arpabet("".join(crf(w))) for w in words]


def cand_g2p_en(args):
    import nltk

    nltk.download = lambda *a, **k: False  # no network; the GRU needs no NLTK data
    from g2p_en.g2p import G2p, construct_homograph_dictionary  # noqa: F401

    g2p = G2p.__new__(G2p)
    g2p.graphemes = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
    g2p.g2idx = {g: i for i, g in enumerate(g2p.graphemes)}
    probe = G2p.__init__.__code__.co_consts  # the phoneme list is a literal there
    phonemes = next(c for c in probe if isinstance(c, tuple) and "AA0" in c)
    g2p.phonemes = ["<pad>", "<unk>", "<s>", "</s>", *phonemes]
    g2p.idx2p = dict(enumerate(g2p.phonemes))
    g2p.load_variables()
    return lambda words: [g2p.predict(w.replace("'", "")) for w in words]


def cand_espeak(args):
    from piper import espeakbridge
    from piper.phonemize_espeak import ESPEAK_DATA_DIR

    espeakbridge.initialize(str(ESPEAK_DATA_DIR))
    espeakbridge.set_voice("en-us")

    def run(words):
        out = []
        for w in words:
            clauses = espeakbridge.get_phonemes(w)
            ipa = "".join(re.sub(r"\([^)]*\)", "", c[0]) for c in clauses)
            out.append(ipa_to_arpabet(ipa))
        return out

    return run


CANDIDATES = {
    "ours": cand_ours,
    "gruut": cand_gruut,
    "g2p-en": cand_g2p_en,
    "espeak": cand_espeak,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default=",".join(CANDIDATES))
    p.add_argument("--ours", default=None, help="G2P folder instead of the bundled")
    p.add_argument("--extra-path", default=None, help="site dir of the candidates")
    p.add_argument("--make-split", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.extra_path:
        sys.path.insert(0, args.extra_path)
    lexicon = read_cmudict()
    if args.make_split:
        make_split(lexicon)
        return
    sets = read_split()
    results = []
    for name in args.systems.split(","):
        try:
            predict = CANDIDATES[name](args)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        for set_name, words in sets.items():
            t0 = time.perf_counter()
            preds = predict(words)
            seconds = time.perf_counter() - t0
            refs = [lexicon[w] for w in words]
            row = {
                "system": name,
                "set": set_name,
                "n_words": len(words),
                "words_per_s": len(words) / seconds,
            }
            for stress in (False, True):
                s = score(preds, refs, stress)
                tag = "stress" if stress else "nostress"
                row[f"per_{tag}"], row[f"wer_{tag}"] = s["per"], s["wer"]
            results.append(row)
            print(
                f"{name:8s} {set_name:7s} n={len(words):5d} "
                f"PER {row['per_nostress']:6.1%} WER {row['wer_nostress']:6.1%} | "
                f"with stress PER {row['per_stress']:6.1%} WER "
                f"{row['wer_stress']:6.1%} | {row['words_per_s']:8.0f} words/s",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
