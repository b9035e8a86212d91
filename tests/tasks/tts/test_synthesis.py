"""tts_requests and mels stage logic, on a tiny random SpeechT5 voice (written to a
tmp dir with save_speecht5 by tests/fixtures/tts/tiny_voice.py: it does not speak,
it exercises the mechanics)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tasks.tts.engines import (
    EngineError,
    SynthesisOptions,
    load_speecht5_voice,
    resolve_voice_dir,
)
from tasks.tts.mels import MELS, TTS_MEL, compute_mels_speecht5
from tasks.tts.requests import (
    TextItem,
    TextOptions,
    TtsRequestsParams,
    compute_tts_requests,
    keyed_item,
    read_texts,
    request_rows,
    sentence_chunks,
    split_sentences,
)
from tests.fixtures.tts.tiny_voice import make_tiny_voice


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory):
    return str(make_tiny_voice(tmp_path_factory.mktemp("voice")))


def test_read_texts_formats_and_bad_bytes(tmp_path):
    txt = tmp_path / "lines.txt"
    txt.write_bytes(b"\xef\xbb\xbfFirst line.\n\n  \nbad \xff\xfe bytes\nLast one.\n")
    items = {i.utt_id: i for i in read_texts([str(txt)])}
    assert set(items) == {"lines-00001", "lines-00004", "lines-00005"}
    assert items["lines-00001"].text == "First line."  # BOM stripped
    assert "not valid UTF-8" in items["lines-00004"].error
    assert items["lines-00004"].text is None

    csv = tmp_path / "t.csv"
    csv.write_bytes(
        b"utt_id,text,speaker\na,Hello there.,sp1\nb,caf\xe9 latin-1,sp2\na,dup,\n"
    )
    rows = read_texts([str(csv)])
    assert [r.utt_id for r in rows] == ["a", "b", "a#dup2"]
    assert rows[0].speaker == "sp1" and rows[0].error is None
    assert "UTF-8" in rows[1].error and "duplicate" in rows[2].error

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_bytes(
        b'{"text": "One."}\n{broken json\n{"text": "Two.", "utt_id": "x"}\n'
    )
    rows = read_texts([str(jsonl)])
    assert [r.utt_id for r in rows] == ["t-00000", "t-00001", "x"]
    assert rows[1].error.startswith("line 2") and rows[2].text == "Two."

    parquet = tmp_path / "p.parquet"
    pd.DataFrame({"text": ["Alpha.", "Beta."]}).to_parquet(parquet)
    assert [r.text for r in read_texts([str(parquet)])] == ["Alpha.", "Beta."]

    nocol = tmp_path / "n.csv"
    nocol.write_text("sentence\nhello\n")
    with pytest.raises(ValueError, match="no 'text' column"):
        read_texts([str(nocol)])
    with pytest.raises(ValueError, match="expected one of"):
        read_texts([str(tmp_path / "x.docx")])


def test_split_sentences_prefers_sentence_then_comma_then_space():
    text = "One two three. Four five, six seven. Eight"
    assert split_sentences(text, 100) == [text]
    # 22 characters hold the middle sentence whole: cut only at sentence ends (a
    # comma-first or space-first cut would break "Four five, six seven." apart)
    assert split_sentences(text, 22) == [
        "One two three.",
        "Four five, six seven.",
        "Eight",
    ]
    # 20 do not: that sentence is cut at its comma, not at the space after "six"
    chunks = split_sentences(text, 20)
    assert chunks == ["One two three.", "Four five,", "six seven.", "Eight"]
    assert " ".join(chunks) == text
    # no punctuation: spaces, as many words per chunk as fit
    assert split_sentences("alpha beta gamma delta", 11) == [
        "alpha beta",
        "gamma delta",
    ]
    long_word = "x" * 50
    assert split_sentences(long_word, 20) == ["x" * 20, "x" * 20, "x" * 10]


def test_requests_rows_for_bad_input(voice_dir):
    items = [
        TextItem("ok", "Hello \u201cworld\u201d \u2014 fine.", None, "f:1"),
        TextItem("empty", "   ", None, "f:2"),
        TextItem("digits", "12345", None, "f:3"),
        TextItem("mixed", "Room 101 is \u00e9tage", "spk", "f:4"),
        TextItem("huge", "word " * 20000, None, "f:5"),
        TextItem("bad", None, None, "f:6", "line 6 is not valid UTF-8"),
        TextItem("long", "A sentence here. " * 20, None, "f:7"),
    ]
    params = TtsRequestsParams(
        TextOptions(), SynthesisOptions(voice=voice_dir), "e", 60
    )
    rows = compute_tts_requests([keyed_item(i, "k") for i in items], params)
    by = {r["utt_id"]: r for r in rows}
    assert by["ok"]["status"] == "ok"
    assert by["ok"]["normalized_text"] == 'Hello "world" - fine.'
    assert by["empty"]["error"] == "empty text"
    assert "nothing left to say" in by["digits"]["error"]
    assert by["mixed"]["status"] == "ok" and by["mixed"]["unknown_chars"] == ["1", "0"]
    assert by["mixed"]["normalized_text"] == "Room is etage"  # accent folded
    assert "more than max_chars=1000" in by["huge"]["error"]
    assert by["bad"]["error"] == "line 6 is not valid UTF-8"
    assert by["long"]["n_chunks"] > 1
    assert by["ok"]["n_tokens"] == len(by["ok"]["normalized_text"]) + 2  # ▁ + </s>


def test_mels_speecht5_batching_and_step_limits(voice_dir):
    voice = load_speecht5_voice(voice_dir)
    rows = [
        {"utt_id": f"u{i}", "normalized_text": t}
        for i, t in enumerate(
            ["Hi.", "A longer sentence here. And a second one.", "Ok"]
        )
    ]
    opts = SynthesisOptions(voice=voice_dir, batch_size=2, maxlenratio=2.0)
    out = compute_mels_speecht5(voice, rows, opts, limit=30)
    assert [r["status"] for r in out] == ["ok"] * 3
    for r in out:
        # the tiny voice never emits its stop token: every chunk is cut
        assert r["hit_max_length"] and not r["stopped"]
        mel = TTS_MEL.read(r)
        assert mel.shape == (r["n_frames"], 80) and r["n_mels"] == 80
        assert mel.dtype == np.float16
    # same seed, same mel whatever the batch
    alone = compute_mels_speecht5(voice, rows[1:2], opts, limit=30)[0]
    np.testing.assert_allclose(
        TTS_MEL.read(alone).astype(np.float32),
        TTS_MEL.read(out[1]).astype(np.float32),
        atol=2e-3,
    )
    # the stored layout (mels schema version 2) gives the same matrices back
    table = pa.Table.from_pylist([{**r, "input_key": "k"} for r in out], MELS.schema)
    assert table.schema.field("log_mel").type == pa.binary()
    for stored, r in zip(table.to_pylist(), out, strict=True):
        np.testing.assert_array_equal(TTS_MEL.read(stored), TTS_MEL.read(r))


def test_missing_default_voice_has_a_clear_message(tmp_path, monkeypatch):
    import tasks.tts.engines

    assert (resolve_voice_dir("default") / "model.safetensors").is_file()  # shipped
    monkeypatch.setattr(tasks.tts.engines, "DEFAULT_VOICE_DIR", tmp_path / "gone")
    with pytest.raises(EngineError, match="no trained default SpeechT5 voice"):
        resolve_voice_dir("default")


def test_speaker_embedding_checks(tmp_path, voice_dir):
    from tasks.tts.engines import read_speaker_embedding

    good = tmp_path / "good.npy"
    np.save(good, np.zeros(512, np.float32))
    assert read_speaker_embedding(good).shape == (512,)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(256, np.float32))
    with pytest.raises(ValueError, match="expected 512 floats"):
        read_speaker_embedding(bad)
    text = tmp_path / "t.npy"
    text.write_text(json.dumps([0.0] * 512))
    with pytest.raises(ValueError, match="cannot read"):
        read_speaker_embedding(text)


def test_sentence_chunks_split_every_sentence():
    text = "He left. She stayed, waiting. Did it end? Yes!"
    assert sentence_chunks(text, 100) == [
        "He left.",
        "She stayed, waiting.",
        "Did it end?",
        "Yes!",
    ]
    assert sentence_chunks("One two three four.", 8) == ["One two", "three", "four."]


def test_requests_are_normalised_for_english_engines(tmp_path):
    """A v2 voice and an English teacher get the words to say; a mostly-markup text
    fails with the reason; a non-English teacher gets the text as it was."""
    voice = make_tiny_voice(tmp_path / "v2", front_end="phonemes")
    tok = load_speecht5_voice(str(voice)).tokenizer
    page = "<html><body>" + "<div><p>x</p></div>" * 4 + "</body></html>"
    items = [
        TextItem("money", "Dr. Smith paid $12.50 (50%).", None, "f:1"),
        TextItem("markup", page, None, "f:2"),
        TextItem("two", "He left. She stayed.", None, "f:3"),
    ]
    for tokenizer, english in ((tok, True), (None, True)):
        keyed = [keyed_item(item, "k") for item in items]
        rows = request_rows(keyed, tokenizer, english, TextOptions(), 300)
        by = {r["utt_id"]: r for r in rows}
        assert by["money"]["normalized_text"] == (
            "Doctor Smith paid twelve dollars and fifty cents, fifty percent."
        )
        assert by["markup"]["status"] == "failed"
        assert "text refused: the text is mostly markup" in by["markup"]["error"]
    assert by["two"]["n_chunks"] == 1  # a teacher splits sentences itself
    rows = request_rows([keyed_item(items[0], "k")], None, False, TextOptions(), 300)
    assert rows[0]["normalized_text"] == "Dr. Smith paid $12.50 (50%)."


def test_mels_flag_an_utterance_cut_short(tmp_path):
    """A voice that stops at once on a sentence with many phonemes is retried, then
    flagged cut_short: a stop failure, never a fine item."""
    voice_dir = make_tiny_voice(
        tmp_path / "eager", stop_bias=20.0, front_end="phonemes"
    )
    voice = load_speecht5_voice(str(voice_dir))
    rows = [{"utt_id": "u", "normalized_text": "Doctor Smith met Mister Jones. Hi."}]
    synthesis = SynthesisOptions(voice=str(voice_dir))
    out = compute_mels_speecht5(voice, rows, synthesis, limit=300)[0]
    assert out["status"] == "ok" and out["stopped"] and not out["hit_max_length"]
    assert out["cut_short"]
    assert out["n_frames"] == 2 * 2  # two sentence chunks, one step of r=2 frames
