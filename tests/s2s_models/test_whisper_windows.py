"""VAD-mode window planning: what is cut out, how windows are packed, how their
times map back to the recording."""

import numpy as np
import pytest

from s2s_models.whisper import vad
from s2s_models.whisper.transcription import TranscribeOptions
from s2s_models.whisper.windows import (
    Window,
    active_pieces,
    cut_silences,
    plan_windows,
    rescore_silences,
    speech_seconds,
)

SR = 16_000
F = vad.FRAME_S


def _probs(*runs: tuple[float, float]) -> np.ndarray:
    """Frame probabilities from (seconds, probability) runs."""
    return np.concatenate([np.full(round(s / F), p, np.float32) for s, p in runs])


def test_window_time_mapping_across_cut_silences():
    window = Window(0, ((2.0, 5.0), (9.0, 10.0), (20.0, 24.0)))
    assert window.duration_s == pytest.approx(8.0)
    assert (window.start_s, window.end_s) == (2.0, 24.0)
    assert window.to_recording(0.0) == pytest.approx(2.0)
    assert window.to_recording(2.5) == pytest.approx(4.5)
    assert window.to_recording(3.5) == pytest.approx(9.5)  # inside the second piece
    assert window.to_recording(4.0) == pytest.approx(10.0)
    assert window.to_recording(6.0) == pytest.approx(22.0)
    assert window.to_recording(30.0) == pytest.approx(24.0)  # past the end: its end
    rest = window.after(3.5)
    assert rest.pieces == ((9.5, 10.0), (20.0, 24.0)) and rest.attempt == 1
    assert window.after(8.0) is None


def test_window_samples_join_its_pieces():
    audio = np.arange(30 * SR, dtype=np.float32)
    window = Window(0, ((1.0, 1.5), (3.0, 3.25)))
    samples = window.samples(audio)
    assert len(samples) == int(0.75 * SR)
    assert samples[0] == SR and samples[int(0.5 * SR)] == 3 * SR


def test_long_confident_silence_is_cut_out_and_short_pauses_stay():
    options = TranscribeOptions(vad_speech_pad_s=0.2)
    probs = _probs((1.0, 0.01), (4.0, 0.95), (0.6, 0.01), (3.0, 0.9), (6.0, 0.01),
                   (2.0, 0.9), (0.5, 0.01))  # fmt: skip
    total = len(probs) * F
    pieces = active_pieces(probs, total, options)
    # the 0.6 s pause stays inside a piece; the 6 s silence is cut out
    assert len(pieces) == 2
    (a0, a1), (b0, b1) = pieces
    assert a0 == pytest.approx(0.0)  # a leading pause shorter than the cut stays
    assert 8.6 < a1 < 9.0 and 14.4 < b0 < 15.0
    assert b1 == pytest.approx(total)  # so does the trailing 0.5 s


def test_weak_speech_in_a_pause_is_kept():
    """A pause whose frames a VAD scores low but not silent (a whisper) is decoded."""
    options = TranscribeOptions()
    probs = _probs((3.0, 0.95), (4.0, 0.25), (3.0, 0.95))
    pieces = active_pieces(probs, len(probs) * F, options)
    assert pieces == [(0.0, pytest.approx(len(probs) * F))]
    silent = _probs((3.0, 0.95), (4.0, 0.02), (3.0, 0.95))
    assert len(active_pieces(silent, len(silent) * F, options)) == 2


def test_windows_pack_pieces_up_to_the_limit():
    options = TranscribeOptions()
    runs = []
    for _ in range(6):  # six 9 s utterances, 5 s of silence between them
        runs += [(9.0, 0.95), (5.0, 0.01)]
    probs = _probs(*runs)
    windows = plan_windows(probs, len(probs) * F, options)
    assert len(windows) == 2
    for pieces in windows:
        assert len(pieces) == 3
        assert sum(b - a for a, b in pieces) <= 30.0 + 1e-6
    flat = [p for w in windows for p in w]
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(flat, flat[1:], strict=False))


def test_a_short_file_without_any_speech_is_left_to_whisper():
    options = TranscribeOptions()
    quiet = _probs((12.0, 0.01))
    assert plan_windows(quiet, 12.0, options) == [((0.0, 12.0),)]
    assert plan_windows(_probs((45.0, 0.01)), 45.0, options) == []
    assert plan_windows(np.zeros(0, np.float32), 0.0, options) == []


def test_a_long_run_of_speech_is_cut_at_its_quietest_frame():
    options = TranscribeOptions()
    probs = _probs((75.0, 0.9))
    probs[round(22.0 / F)] = 0.1
    probs[round(47.0 / F)] = 0.2
    windows = plan_windows(probs, len(probs) * F, options)
    ends = [round(w[-1][1], 2) for w in windows]
    assert ends[:2] == [pytest.approx(22.0, abs=0.04), pytest.approx(47.0, abs=0.04)]
    assert all(sum(b - a for a, b in w) <= 30.0 + 1e-6 for w in windows)


def test_speech_seconds_counts_frames_at_the_threshold():
    probs = _probs((2.0, 0.9), (2.0, 0.2), (2.0, 0.6))
    assert speech_seconds(probs, [(0.0, 6.0)], 0.5) == pytest.approx(4.0, abs=2 * F)
    assert speech_seconds(probs, [(1.0, 3.0)], 0.5) == pytest.approx(1.0, abs=2 * F)
    assert speech_seconds(probs, [(0.0, 6.0)], 0.1) == pytest.approx(6.0, abs=3 * F)


def test_windows_on_real_speech(speech_60s):
    audio, meta = speech_60s
    options = TranscribeOptions()
    probs = vad.speech_probabilities(audio)
    total = len(audio) / SR
    windows = plan_windows(probs, total, options)
    assert len(windows) == 2
    flat = [p for w in windows for p in w]
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(flat, flat[1:], strict=False))
    for pieces in windows:
        assert 0 < sum(b - a for a, b in pieces) <= 30.0 + 1e-6
    # every clip is inside the kept audio; the 7 s silence between the third and
    # fourth clip is not
    kept = lambda t: any(a <= t <= b for a, b in flat)  # noqa: E731
    for item in meta["items"]:
        assert kept(item["start_s"] + 0.3) and kept(item["end_s"] - 0.3)
    gap_middle = (meta["items"][2]["end_s"] + meta["items"][3]["start_s"]) / 2
    assert not kept(gap_middle)


def test_quiet_speech_after_loud_speech_is_rescored_alone():
    """Silero's carried state scores a clip 40 dB quieter, right after loud speech,
    as silence: the plan would cut it out. Scored again alone it is speech, and
    the plan keeps all of it."""
    import soundfile as sf
    import soxr

    from tests.conftest import SAMPLES

    loud, sr = sf.read(SAMPLES / "jfk.flac", dtype="float32")
    loud = soxr.resample(loud.mean(axis=1), sr, SR).astype(np.float32)  # stereo
    quiet, sr = sf.read(
        SAMPLES / "sense_and_sensibility_01_austen_64kb-0880.wav", dtype="float32"
    )
    assert sr == SR
    quiet = quiet * 10 ** (-40 / 20)
    pause, tail = np.zeros(SR // 2, np.float32), np.zeros(SR, np.float32)
    audio = np.concatenate([loud, pause, quiet, tail])
    total_s = len(audio) / SR
    a = (len(loud) + len(pause)) / SR
    b = a + len(quiet) / SR

    def kept(probs) -> float:  # fraction of the quiet clip inside the plan
        pieces = active_pieces(probs, total_s, TranscribeOptions())
        return sum(max(0.0, min(b, y) - max(a, x)) for x, y in pieces) / (b - a)

    in_context = vad.speech_probabilities(audio)
    assert kept(in_context) < 0.2  # the failure this guards against
    rescored = rescore_silences(audio, in_context, TranscribeOptions())
    assert kept(rescored) > 0.95
    assert np.all(rescored >= in_context)  # a frame only ever gains
    # the loud clip, never cut, is left as it was
    n_loud = int(len(loud) / SR / F)
    np.testing.assert_array_equal(rescored[:n_loud], in_context[:n_loud])
    # and none of it is scored twice when nothing is cut
    assert cut_silences(np.ones(100, np.float32), 100 * F, TranscribeOptions()) == []
