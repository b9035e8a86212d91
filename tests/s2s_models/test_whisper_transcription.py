"""Rules both long-form modes share: hallucination loops, silence, options."""

import pytest

from s2s_models.whisper.decoding import DecodingResult
from s2s_models.whisper.transcription import (
    LOOP_CUT,
    REPETITIVE,
    Segment,
    TranscribeOptions,
    clean_segment_text,
    clean_segments,
    find_loop,
    is_silence,
)


def test_find_loop_catches_repeated_ngram():
    words = ("I see. " + "Thank you. " * 8 + "Bye.").split()
    start, n, repeats = find_loop(words)
    assert (start, n, repeats) == (2, 2, 8)


def test_find_loop_ignores_short_real_repetition():
    # from a real reference transcript: four repeats, but only four words
    words = "here's some more words words words words um and that".split()
    assert find_loop(words) is None
    # a phrase said twice is not a loop either
    assert find_loop("we will go we will go home now".split()) is None


def test_find_loop_is_case_and_punctuation_insensitive():
    words = "So. so, SO so so so so so so so so so".split()
    assert find_loop(words) == (0, 1, 12)


def test_clean_segment_text_keeps_speech_and_cuts_the_loop():
    text = " The meeting is over." + " Thank you for watching." * 12
    cleaned, flag = clean_segment_text(text, 2.4, 4, 10)
    assert flag == LOOP_CUT
    assert cleaned == " The meeting is over. Thank you for watching."


def test_clean_segment_text_drops_text_that_still_compresses_too_well():
    # alternating pattern: no back-to-back repeat of one n-gram up to 12 words...
    text = " ".join(f"la{i % 13} di{i % 7}" for i in range(120))
    assert find_loop(text.split()) is None
    cleaned, flag = clean_segment_text(text, 2.4, 4, 10)
    assert (cleaned, flag) == ("", REPETITIVE)
    ordinary = " It was the first great sorrow of his life."
    assert clean_segment_text(ordinary, 2.4, 4, 10) == (ordinary, None)


def _segment(text: str, flag=None) -> Segment:
    return Segment(1.0, 2.0, text, -0.2, 0.1, 1.2, 0.0, flag)


def test_clean_segments_keeps_what_it_cut_visible():
    """A dropped or cut segment stays in the list with its flag, so the transcript
    records where speech was left out; an empty unflagged segment goes."""
    options = TranscribeOptions()
    looping = " ".join(f"la{i % 13} di{i % 7}" for i in range(120))
    segments = [
        _segment(" Hello there."),
        _segment(" And so. " + "Thank you. " * 10),
        _segment(looping),
        _segment("   "),
        _segment("", flag="no_speech"),
    ]
    cleaned = clean_segments(segments, options)
    assert [s.flag for s in cleaned] == [None, LOOP_CUT, REPETITIVE, "no_speech"]
    assert cleaned[1].text == " And so. Thank you."
    assert cleaned[2].text == "" and cleaned[3].text == ""


def _result(
    no_speech: float, logprob: float, text: str = " Thank you."
) -> DecodingResult:
    return DecodingResult((1, 2), text, "en", logprob, no_speech, 1.0, 0.0)


def test_silence_needs_both_a_likely_no_speech_and_an_improbable_text():
    options = TranscribeOptions()
    assert is_silence(_result(0.9, -1.5), options)
    assert not is_silence(_result(0.9, -0.3), options)  # confident text is kept
    assert not is_silence(_result(0.3, -1.5), options)  # speech is likely
    # never on the no-speech probability alone
    alone = TranscribeOptions(logprob_threshold=None)
    assert not is_silence(_result(0.99, -3.0), alone)
    assert not is_silence(
        _result(0.99, -3.0), TranscribeOptions(no_speech_threshold=None)
    )


def test_options_verify_rejects_inconsistent_values():
    TranscribeOptions().verify()
    for bad in (
        {"longform_mode": "streaming"},
        {"weak_speech_threshold": 0.8},  # above vad_threshold
        {"remainder_speech_s": 0.0},
        {"max_words_per_s": 0.0},
        {"max_chunk_s": 40.0},
        {"temperatures": ()},
    ):
        with pytest.raises(ValueError):
            TranscribeOptions(**bad).verify()
