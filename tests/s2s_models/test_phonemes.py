"""The phoneme front ends of our own voices: cmudict-arpabet (CMUdict + spelled
fallback, the first default voice's) and en-arpabet-v2 (English normalisation, CMUdict,
then the G2P model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2s_models.speecht5.phonemes import (
    PHONEMES,
    Lexicon,
    PhonemeTokenizer,
    number_words,
    text_to_phonemes,
    text_to_symbols,
)

DEFAULT_VOICE = Path(__file__).parents[2] / "s2s_models" / "voices" / "default"


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (105, "one hundred five"),
        (1905, "one thousand nine hundred five"),
        (2_000_017, "two million seventeen"),
        (10**12, "one trillion"),
        (10**15, "one" + " zero" * 15),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


def test_v1_reads_thirteen_digits_one_by_one():
    symbols, _ = text_to_symbols(str(10**12), Lexicon.bundled())
    assert symbols.count("Z") == 12  # "one" then twelve "zero"s, as it always did


def test_symbols_words_punctuation_and_fallbacks():
    lexicon = Lexicon.bundled()
    symbols, spelled = text_to_symbols("The cat's 2 hats, Qzxv!", lexicon)
    assert spelled == ["Qzxv"]
    assert symbols[:3] == ["DH", "AH0", " "]
    assert "K AE1 T S".split() == symbols[3:7]  # possessive of a known word
    assert "T UW1".split() == symbols[8:10]  # the digit read as a word
    assert symbols[-1] == "!" and "," in symbols
    # the unknown word is spelled with letter names: Q = K Y UW1
    q = symbols.index("K", 10)
    assert symbols[q : q + 3] == ["K", "Y", "UW1"]


def test_tokenizer_roundtrip_and_batch(tmp_path):
    tok = PhonemeTokenizer(PhonemeTokenizer.default_symbols(), "phonemes-v1")
    assert len(tok) == 4 + 1 + 7 + len(PHONEMES)
    tok.save(tmp_path)
    again = PhonemeTokenizer.from_pretrained(tmp_path)
    enc = again.encode("Hello\u2014world \u00e9t\u00e9 \u2603")
    assert enc.ids[-1] == again.eos_id and again.unk_id not in enc.ids
    assert enc.unknown_chars == ["\u2603"]  # the snowman is removed and reported
    assert again.decode(enc.ids).startswith("HH AH0 L OW1 | - | W ER1 L D")
    batch = again.encode_batch(["Hi.", "A longer sentence here."])
    assert batch.input_ids.shape[0] == 2
    assert batch.attention_mask[0].sum() < batch.attention_mask[1].sum()
    assert int(batch.input_ids[0, -1]) == again.pad_id


def test_character_front_end_roundtrip(tmp_path):
    tok = PhonemeTokenizer.for_front_end("characters")
    assert len(tok) == 4 + 1 + 7 + 27  # specials, boundary, punctuation, a-z and '
    symbols, spelled = text_to_symbols("The cat's 2 hats, Qzxv!", None)
    assert spelled == []  # nothing is spelled: every word is its letters
    assert "".join(symbols) == "the cat's two hats , qzxv !"
    tok.save(tmp_path)
    again = PhonemeTokenizer.from_pretrained(tmp_path)
    assert again.front_end == "characters" and again.lexicon is None
    enc = again.encode("It's 40\u2014done.")
    assert again.unk_id not in enc.ids
    assert again.decode(enc.ids) == "i t ' s | f o r t y | - | d o n e | ."


def test_front_end_is_read_back_and_checked(tmp_path):
    PhonemeTokenizer.for_front_end("phonemes").save(tmp_path)
    assert json.loads((tmp_path / "phonemes.json").read_text())["front_end"] == (
        "en-arpabet-v2"
    )
    assert PhonemeTokenizer.from_pretrained(tmp_path).front_end == "phonemes"
    (tmp_path / "phonemes.json").write_text('{"symbols": ["<s>", "<pad>", "</s>", '
                                            '"<unk>"]}')  # fmt: skip
    assert PhonemeTokenizer.from_pretrained(tmp_path).name == "cmudict-arpabet"
    (tmp_path / "phonemes.json").write_text('{"front_end": "klingon", "symbols": []}')
    with pytest.raises(ValueError, match="unknown front end 'klingon'"):
        PhonemeTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="front end must be one of"):
        PhonemeTokenizer([], "klingon")


def test_old_voice_keeps_its_front_end(tmp_path):
    """A voice whose phonemes.json says cmudict-arpabet (the previous default voice's)
    is read exactly as before: digits read, unknown words spelled, no other
    normalisation; the shipped default voice reads en-arpabet-v2."""
    shipped = json.loads((DEFAULT_VOICE / "phonemes.json").read_text())
    assert shipped["front_end"] == "en-arpabet-v2"
    old = {**shipped, "front_end": "cmudict-arpabet"}  # same inventory
    (tmp_path / "phonemes.json").write_text(json.dumps(old))
    tok = PhonemeTokenizer.from_pretrained(tmp_path)
    assert tok.front_end == "phonemes-v1" and tok.name == "cmudict-arpabet"
    enc = tok.encode("Dr. Smith paid $5 to Qzxv.")
    assert enc.text == "Dr. Smith paid 5 to Qzxv."
    assert enc.unknown_chars == ["$"]
    assert tok.decode(enc.ids).startswith("D R AY1 V | . | S M IH1 TH")
    assert "F AY1 V" in tok.decode(enc.ids)


def test_v2_shares_the_inventory_and_normalises():
    v1, v2 = (PhonemeTokenizer.for_front_end(k) for k in ("phonemes-v1", "phonemes"))
    assert v1.symbols == v2.symbols  # one inventory: a v1 voice can read v2 ids
    enc = v2.encode("Dr. Smith paid $5.")
    assert enc.text == "Doctor Smith paid five dollars."
    assert v2.decode(enc.ids) == (
        "D AA1 K T ER0 | S M IH1 TH | P EY1 D | F AY1 V | D AA1 L ER0 Z | ."
    )
    assert v2.count_units(enc.ids) == 20  # phonemes only: no boundaries, no "."


def test_v2_letters_article_and_guessed_words():
    lexicon = Lexicon.bundled()
    calls = []

    def guess(words):
        calls.append(list(words))
        return [["G", "EH1", "S"] for _ in words]

    symbols, guessed = text_to_phonemes(
        "A cat met the F B I's A B C, and Zqfoo.", lexicon, guess
    )
    assert guessed == ["zqfoo"] and calls == [["zqfoo"]]  # one batch, lexicon first
    text = " ".join("|" if s == " " else s for s in symbols)
    assert text.startswith("AH0 | K AE1 T")  # sentence-initial "A" is the article
    assert "EH1 F | B IY1 | AY1 Z" in text  # letters, and "I's" with its ending
    assert "EY1 | B IY1 | S IY1 | ," in text  # "A" inside an acronym is a letter
    assert text.endswith("G EH1 S | .")  # the guess, not a spelling
    spelled, _ = text_to_phonemes("Zqfoo.", lexicon, lambda w: [[] for _ in w])
    assert spelled[:2] == ["Z", "IY1"]  # no guess: spelled letter by letter
