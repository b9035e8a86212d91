"""Word timestamps: the DTW, the filters and word grouping (pure), and word timings
on real speech against faster-whisper's on the same weights."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s2s_models.whisper.alignment import (
    WordTiming,
    alignment_heads,
    dtw,
    median_filter,
    merge_punctuation,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "whisper"


def test_dtw_follows_the_cheap_diagonal_and_stays_monotonic():
    cost = np.ones((4, 8))
    # the cheap path: token k lives on frames 2k and 2k + 1
    for k in range(4):
        cost[k, 2 * k : 2 * k + 2] = 0.0
    rows, cols = dtw(cost)
    assert rows[0] == 0 and cols[0] == 0 and rows[-1] == 3 and cols[-1] == 7
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0)
    assert cost[rows, cols].sum() == 0.0
    first_frame = {r: cols[list(rows).index(r)] for r in range(4)}
    assert first_frame == {0: 0, 1: 2, 2: 4, 3: 6}


def test_dtw_matches_a_brute_force_minimum():
    rng = np.random.default_rng(0)
    cost = rng.random((3, 5))
    rows, cols = dtw(cost)
    # every monotonic path from (0, 0) to (2, 4) with unit steps
    best = np.inf
    stack = [((0, 0), cost[0, 0])]
    while stack:
        (i, j), total = stack.pop()
        if (i, j) == (2, 4):
            best = min(best, total)
            continue
        for di, dj in ((1, 1), (1, 0), (0, 1)):
            if i + di <= 2 and j + dj <= 4:
                stack.append(((i + di, j + dj), total + cost[i + di, j + dj]))
    assert cost[rows, cols].sum() == pytest.approx(best)


def test_median_filter_removes_a_spike_and_keeps_steps():
    x = torch.tensor([[0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    out = median_filter(x, 3)
    assert out[0, 3] == 0.0
    assert out[0, 7] == 1.0 and out.shape == x.shape


def _word(text: str, start: float, end: float) -> WordTiming:
    return WordTiming(text, (len(text),), start, end, 0.9)


def test_punctuation_joins_its_word_with_the_word_times():
    words = [
        _word(" He", 0.0, 0.2), _word(" said", 0.2, 0.5), _word(",", 0.5, 0.5),
        _word(' "', 0.6, 0.6), _word(" yes", 0.6, 0.9), _word(".", 0.9, 1.0),
    ]  # fmt: skip
    merged = merge_punctuation(words)
    assert [w.word for w in merged] == [" He", " said,", ' " yes.']
    assert (merged[1].start, merged[1].end) == (0.2, 0.5)
    assert (merged[2].start, merged[2].end) == (0.6, 0.9)


def test_alignment_heads_come_from_the_checkpoint_or_the_published_table():
    from s2s_models.whisper.model import Whisper, WhisperDims

    tiny_en = Whisper(WhisperDims(80, 1500, 384, 6, 4, 51864, 448, 384, 6, 4))
    assert alignment_heads(tiny_en)[:3] == ((1, 0), (2, 0), (2, 5))
    other = Whisper(WhisperDims(80, 1500, 64, 2, 2, 51864, 448, 64, 2, 4))
    assert alignment_heads(other) == ((2, 0), (2, 1), (3, 0), (3, 1))
    other.alignment_heads = ((0, 1),)
    assert alignment_heads(other) == ((0, 1),)


@pytest.fixture(scope="module")
def tiny_en():
    torch.set_num_threads(2)
    from s2s_models import load_asr

    return load_asr("tiny.en", device="cpu")


def _jfk() -> np.ndarray:
    audio, sr = sf.read(FIXTURES / "jfk.flac", dtype="float32")
    assert sr == 16000
    return audio


@pytest.mark.slow
def test_word_timings_on_real_speech(tiny_en):
    from s2s_models import TranscribeOptions

    for mode in ("vad", "sequential"):
        options = TranscribeOptions(word_timestamps=True, longform_mode=mode)
        [result] = tiny_en.transcribe([_jfk()], options)
        words = result.words
        text = "".join(w.word for w in words).strip()
        assert text == result.text.strip()
        starts = [w.start_s for w in words]
        assert starts == sorted(starts)
        assert all(w.start_s <= w.end_s for w in words)
        assert all(0.0 <= w.probability <= 1.0 for w in words)
        # "Americans" is spoken at about 1.8-2.3 s, "country" ends the clip
        americans = next(w for w in words if "Americans" in w.word)
        assert 1.5 < americans.start_s < 2.1
        assert words[-1].word.strip(" .,").lower() == "country"
        assert 9.8 < words[-1].end_s <= 11.0


@pytest.mark.slow
@pytest.mark.parity
def test_word_starts_match_faster_whisper(tiny_en):
    """Same weights, same text: faster-whisper's word_timestamps=True and ours place
    the words of the JFK clip alike (median start difference under 0.1 s)."""
    fw = pytest.importorskip("faster_whisper")
    from s2s_models import TranscribeOptions
    from s2s_models.whisper.checkpoints import resolve_checkpoint

    audio = _jfk()
    model = fw.WhisperModel(
        str(resolve_checkpoint("tiny.en")), device="cpu", compute_type="float32"
    )
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, word_timestamps=True, vad_filter=False
    )
    theirs = [w for s in segments for w in s.words]
    options = TranscribeOptions(word_timestamps=True, longform_mode="sequential")
    [ours] = tiny_en.transcribe([audio], options)

    def key(word: str) -> str:  # the texts may differ in punctuation only
        return word.strip(" .,!?").lower()

    assert [key(w.word) for w in ours.words] == [key(w.word) for w in theirs]
    diffs = [abs(a.start_s - b.start) for a, b in zip(ours.words, theirs, strict=True)]
    assert float(np.median(diffs)) < 0.1
    assert max(diffs) < 0.25
