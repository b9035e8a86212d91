"""Long-form transcription with the bundled tiny.en weights: both modes, the
sequential seek logic, re-decoding what a VAD window left, the end of a recording."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from s2s_models.whisper import longform, sequential
from s2s_models.whisper.transcription import TranscribeOptions

FIXTURES = Path(__file__).parents[1] / "fixtures" / "longform"
SR = 16_000
TB = 1000  # a made-up <|0.00|> id for the token-level tests


# ---------------------------------------------------------------------------
# Seek logic of the sequential mode (pure)
# ---------------------------------------------------------------------------
def test_split_at_timestamps_window_ends_mid_segment():
    # <0.00> a b <1.00><1.00> c d ...  (the second segment never closed)
    tokens = [TB, 5, 6, TB + 50, TB + 50, 7, 8]
    segments, advance = sequential.split_at_timestamps(tokens, TB, 3000)
    assert segments == [(0.0, 1.0, [TB, 5, 6, TB + 50])]
    assert advance == 100  # 1.00 s = 100 mel frames: resume at the open segment


def test_split_at_timestamps_all_segments_closed():
    tokens = [TB, 5, TB + 50, TB + 60, 6, TB + 200]
    segments, advance = sequential.split_at_timestamps(tokens, TB, 3000)
    assert [s[:2] for s in segments] == [(0.0, 1.0), (1.2, 4.0)]
    assert advance == 3000  # everything was consumed


def test_split_at_timestamps_single_segment_and_no_timestamps():
    segments, advance = sequential.split_at_timestamps([TB, 5, 6, TB + 40], TB, 2500)
    assert segments == [(0.0, 0.8, [TB, 5, 6, TB + 40])] and advance == 2500
    segments, advance = sequential.split_at_timestamps([5, 6], TB, 3000)
    assert segments == [(0.0, 30.0, [5, 6])] and advance == 3000
    assert sequential.split_at_timestamps([], TB, 3000) == ([], 3000)


def test_split_at_timestamps_never_stalls():
    # a closed segment at 0.00 would not move seek: take the whole window instead
    tokens = [TB, 5, TB, TB, 6]
    assert sequential.split_at_timestamps(tokens, TB, 3000)[1] == 3000


# ---------------------------------------------------------------------------
# Both modes with the bundled tiny.en weights
# ---------------------------------------------------------------------------
def _wer(reference: str, hypothesis: str) -> float:
    jiwer = pytest.importorskip("jiwer")
    english = pytest.importorskip("whisper_normalizer.english")
    normalise = english.EnglishTextNormalizer()
    return jiwer.wer(normalise(reference), normalise(hypothesis))


@pytest.fixture(scope="module")
def asr():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from s2s_models import load_asr

    return load_asr("tiny.en", device="cpu")


@pytest.fixture(scope="module")
def both_modes(asr, speech_60s):
    audio, _ = speech_60s
    vad_ts = TranscribeOptions(without_timestamps=False, batch_size=4)
    sequential = TranscribeOptions(longform_mode="sequential")
    return {
        "vad": asr.transcribe([audio], vad_ts)[0],
        "sequential": asr.transcribe([audio], sequential)[0],
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["vad", "sequential"])
def test_longform_text_and_times(both_modes, speech_60s, mode):
    audio, meta = speech_60s
    result = both_modes[mode]
    reference = " ".join(item["reference"] for item in meta["items"])
    # measured: 0.85% in both modes (1 error in 117 words); the bound allows 4
    assert _wer(reference, result.text) < 0.035
    assert result.duration_s == pytest.approx(len(audio) / SR)
    times = [(s.start_s, s.end_s) for s in result.segments]
    assert len(times) >= 4
    assert all(0 <= a <= b <= result.duration_s + 1e-6 for a, b in times)
    starts = [a for a, _ in times]
    assert starts == sorted(starts)
    assert all(
        b1 <= a2 + 0.5 for (_, b1), (a2, _) in zip(times, times[1:], strict=False)
    )
    # nothing is placed in the 7 s of silence between the third and fourth clip
    gap = (meta["items"][2]["end_s"] + 1.0, meta["items"][3]["start_s"] - 1.0)
    assert not [t for t in times if t[0] > gap[0] and t[1] < gap[1]]
    # the JFK clip's words are in the first segments, in time order
    assert "country" in " ".join(s.text for s in result.segments[:3]).lower()
    assert np.isfinite(result.avg_logprob) and result.temperature == 0.0


@pytest.mark.slow
def test_flac_audio_is_transcribed_like_the_array(asr, both_modes):
    """A FlacAudio (decoded window by window) gives the array's transcript."""
    from s2s_models.audio import FlacAudio

    lazy = FlacAudio((FIXTURES / "speech_60s.flac").read_bytes())
    options = TranscribeOptions(without_timestamps=False, batch_size=4)
    result = asr.transcribe([lazy], options)[0]
    assert result.text == both_modes["vad"].text
    assert result.segments == both_modes["vad"].segments
    sequential = asr.transcribe([lazy], TranscribeOptions(longform_mode="sequential"))
    assert sequential[0].text == both_modes["sequential"].text


@pytest.mark.slow
def test_modes_agree(both_modes):
    """VAD windows decoded in batches against the sequential one-window-at-a-time
    mode. Measured: the same words (0.0% apart); the bound allows 2 of 117."""
    assert _wer(both_modes["sequential"].text, both_modes["vad"].text) < 0.02


@pytest.mark.slow
def test_batching_across_files_matches_one_at_a_time(asr, speech_60s):
    audio, meta = speech_60s
    clips = [
        audio[int(item["start_s"] * SR) : int(item["end_s"] * SR)]
        for item in meta["items"][:3]
    ]
    batched = asr.transcribe(clips, TranscribeOptions(batch_size=8))
    alone = [asr.transcribe([c], TranscribeOptions(batch_size=1))[0] for c in clips]
    # each window is decoded on its own (float32): batch mates change nothing
    for b, a in zip(batched, alone, strict=True):
        assert b.text == a.text
        spans = [(s.start_s, s.end_s, s.text) for s in b.segments]
        assert spans == [(s.start_s, s.end_s, s.text) for s in a.segments]
        # scores agree to float rounding (matrix products batched differently)
        assert b.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-5)
    for clip, item in zip(batched, meta["items"][:3], strict=True):
        assert _wer(item["reference"], clip.text) < 0.15


@pytest.mark.slow
def test_parallel_loading_changes_nothing(asr, speech_60s, monkeypatch):
    """VAD planned in 4 threads and the next batch cut ahead give the same result
    as one thread (the loader threads only prepare audio; the model runs alone)."""
    from s2s_models.whisper import longform

    audio, meta = speech_60s
    clips = [
        audio[int(item["start_s"] * SR) : int(item["end_s"] * SR)]
        for item in meta["items"]
    ] + [audio]
    options = TranscribeOptions(batch_size=2)
    monkeypatch.setattr(longform, "loader_threads", lambda n: 1)
    one = asr.transcribe(clips, options)
    monkeypatch.setattr(longform, "loader_threads", lambda n: 4)
    four = asr.transcribe(clips, options)
    assert [t.text for t in four] == [t.text for t in one]
    assert [t.segments for t in four] == [t.segments for t in one]


@pytest.mark.slow
def test_silence_gives_empty_text_in_both_modes(asr):
    rng = np.random.default_rng(0)
    quiet = (1e-4 * rng.standard_normal(45 * SR)).astype(np.float32)
    for mode in ("vad", "sequential"):
        [result] = asr.transcribe([quiet], TranscribeOptions(longform_mode=mode))
        assert result.text == "" and result.segments == []
        assert result.duration_s == pytest.approx(45.0)


def test_auto_batch_size_from_free_memory():
    import torch

    from s2s_models.whisper.model import Whisper, WhisperDims

    dims = WhisperDims(80, 1500, 384, 6, 4, 51864, 448, 384, 6, 4)  # tiny.en
    model = Whisper(dims).half()
    per_window = longform.window_bytes(dims, 2)
    # tiny.en in float16: cross K/V 2 x 9.2 MB (the cache's and the fixed-shape
    # decoder's copy), self K/V 2.8 MB, encoder 13.8 MB
    assert 34e6 < per_window < 40e6
    assert longform.auto_batch_size(model) == longform.CPU_BATCH_SIZE  # no GPU
    free = 80e9  # an idle 80 GB GPU holds far more than the cap
    assert longform.auto_batch_size(model, free_bytes=free) == longform.MAX_BATCH_SIZE
    busy = 10 * per_window / longform.GPU_MEMORY_SHARE
    assert longform.auto_batch_size(model, free_bytes=busy) == 10
    assert longform.auto_batch_size(model, beam_size=5, free_bytes=busy) < 10
    assert longform.auto_batch_size(model, free_bytes=1) == 1
    assert model.dtype == torch.float16


# ---------------------------------------------------------------------------
# No silent loss: windows that stop early, the end of a recording
# ---------------------------------------------------------------------------
def _first_segment_only(result, timestamp_begin: int):
    """The result as if Whisper had emitted end-of-text right after its first
    complete segment."""
    first = result.segments[0]
    tokens = list(result.tokens)
    closing = timestamp_begin + round(first.end / 0.02)
    end = next(i for i, t in enumerate(tokens) if i > 0 and t == closing)
    return dataclasses.replace(
        result, tokens=tuple(tokens[: end + 1]), text=first.text, segments=(first,)
    )


@pytest.mark.slow
def test_a_window_that_stops_early_is_decoded_to_its_end(asr, speech_60s, monkeypatch):
    """Every window of the first batch ends after its first segment (an early
    end-of-text); the rest of each window is decoded again, batched, and the
    transcript still holds every clip's words."""
    audio, meta = speech_60s
    real = longform.decode_with_fallback
    calls = []

    def stops_early(*args, **kwargs):
        results = real(*args, **kwargs)
        calls.append(len(results))
        if len(calls) == 1:  # the planned windows
            tb = asr.tokenizer.timestamp_begin
            results = [_first_segment_only(r, tb) for r in results]
        return results

    monkeypatch.setattr(longform, "decode_with_fallback", stops_early)
    [result] = asr.transcribe([audio], TranscribeOptions(batch_size=4))
    assert calls[0] == 2 and len(calls) >= 2  # the rest was decoded again
    reference = " ".join(item["reference"] for item in meta["items"])
    assert _wer(reference, result.text) < 0.12
    assert not [s for s in result.segments if s.flag == "undecoded"]


@pytest.mark.slow
def test_the_last_words_of_a_recording_are_kept(asr, speech_60s):
    """Two clips joined and cut 60 ms after the VAD's last speech frame: the
    transcript ends with the last clip's last words, in both modes."""
    from s2s_models.whisper import vad

    audio, meta = speech_60s
    joined = audio[: int(meta["items"][1]["end_s"] * SR) + SR]
    probs = vad.speech_probabilities(joined)
    last = (np.nonzero(probs >= 0.5)[0][-1] + 1) * vad.FRAME_S
    clip = joined[: int((last + 0.06) * SR)]
    for mode in ("vad", "sequential"):
        [result] = asr.transcribe([clip], TranscribeOptions(longform_mode=mode))
        words = result.text.lower().replace(".", "").replace(",", "").split()
        assert words[-4:] == ["and", "painful", "to", "myself"], (mode, result.text)
