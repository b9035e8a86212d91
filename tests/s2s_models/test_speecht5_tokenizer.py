"""SpeechT5 character tokenizer and text normalisation.

The published ``spm_char.model`` cannot be downloaded in tests, so we train a small
character SentencePiece model with the same special ids and compare our encoding with
transformers' ``SpeechT5Tokenizer`` over it."""

from __future__ import annotations

import pytest

from s2s_models.speecht5.tokenizer import SpeechT5Tokenizer, normalize_text

spm = pytest.importorskip("sentencepiece")

CORPUS = [
    "And so my fellow Americans, ask not what your country can do for you.",
    "IF THE READER WILL EXCUSE ME I WILL SAY NOTHING OF MY ANTECEDENTS",
    "Printing, in the only sense with which we are at present concerned!",
    "She had your dark suit in greasy wash water all year?",
    "it's quick - jumping over the lazy dog; zebra quartz vexed",
    "BOLD FOXES JUMP QUICKLY AND VEX THE GRUMPY WIZARD",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=str(folder / "spm_char"),
        model_type="char",
        vocab_size=200,
        hard_vocab_limit=False,
        character_coverage=1.0,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        minloglevel=2,
    )
    return folder


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return SpeechT5Tokenizer.from_pretrained(model_dir)


def test_normalize_text_without_vocabulary():
    text, unknown = normalize_text(
        "  \u201cIt\u2019s\u201d \u2014 fine\u2026\u00a0 ok "
    )
    assert text == '"It\'s" - fine... ok'
    assert unknown == []


def test_normalize_text_reports_and_removes_unknown(tokenizer):
    text, unknown = tokenizer.normalize_text(
        "Caf\u00e9 na\u00efve \u00c9T\u00c9: 42 \u00bd"
    )
    # accents fall back to the bare letter; digits, ':' and the fraction slash are not
    # in this vocabulary, so they are removed and reported once each, in order
    assert text == "Cafe naive ETE"
    assert unknown == [":", "4", "2", "1", "\u2044"]
    assert normalize_text("x", {"X"}) == ("X", [])  # other case when only that exists


def test_encode_appends_eos_and_pads_batches(tokenizer):
    encoded = tokenizer.encode("ask not")
    assert encoded.ids[-1] == tokenizer.eos_id == 2
    assert encoded.ids[0] == tokenizer.sp.piece_to_id("\u2581")  # leading word marker
    assert tokenizer.decode(encoded.ids) == "ask not"
    assert tokenizer.encode("").ids == [2]
    batch = tokenizer.encode_batch(["ask not", "do for you 7"])
    assert batch.input_ids.shape == batch.attention_mask.shape == (2, 12)
    assert batch.input_ids[0, 9:].tolist() == [tokenizer.pad_id] * 3
    assert batch.attention_mask.sum(-1).tolist() == [9, 12]  # "▁ask▁not</s>"
    assert batch.unknown_chars == [[], ["7"]]


@pytest.mark.parity
def test_ids_match_transformers(tokenizer, model_dir):
    transformers = pytest.importorskip("transformers")
    reference = transformers.SpeechT5Tokenizer(str(model_dir / "spm_char.model"))
    for text in CORPUS + ["Hello, world!", "a  b", "WHY? because."]:
        assert tokenizer.encode(text).ids == reference(text).input_ids, text
