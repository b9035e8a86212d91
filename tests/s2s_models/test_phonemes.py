"""The phoneme front end of our own voices (CMUdict + spelled fallback)."""

from __future__ import annotations

import pytest

from s2s_models.speecht5.phonemes import (
    PHONEMES,
    Lexicon,
    PhonemeTokenizer,
    number_words,
    text_to_symbols,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (105, "one hundred five"),
        (1905, "one thousand nine hundred five"),
        (2_000_017, "two million seventeen"),
        (10**12, "one zero zero zero zero zero zero zero zero zero zero zero zero"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


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
    tok = PhonemeTokenizer(PhonemeTokenizer.default_symbols())
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
    assert PhonemeTokenizer.from_pretrained(tmp_path).front_end == "phonemes"
    (tmp_path / "phonemes.json").write_text('{"front_end": "klingon", "symbols": []}')
    with pytest.raises(ValueError, match="unknown front end 'klingon'"):
        PhonemeTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="front end must be one of"):
        PhonemeTokenizer([], "klingon")
