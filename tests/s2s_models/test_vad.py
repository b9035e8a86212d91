"""Silero VAD wrapper, the probability state machine, and chunk planning."""

from pathlib import Path

import numpy as np
import pytest

from s2s_models.whisper import vad

FIXTURES = Path(__file__).parents[1] / "fixtures" / "longform"
SR = vad.VAD_SAMPLE_RATE


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def test_frame_audio_carries_context():
    audio = np.arange(1500, dtype=np.float32)
    frames = vad.frame_audio(audio)
    assert frames.shape == (3, 576)
    assert np.all(frames[0, :64] == 0)
    np.testing.assert_array_equal(frames[0, 64:], audio[:512])
    np.testing.assert_array_equal(frames[1, :64], audio[448:512])
    np.testing.assert_array_equal(frames[2, 64 : 64 + 476], audio[1024:])
    assert np.all(frames[2, 64 + 476 :] == 0)


def test_probabilities_match_silero_streaming_model(speech_60s):
    """Our framing + the sequence model == the package's own streaming ONNX path."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:  # importing silero_vad sets torch to one thread: undo it for later tests
        utils_vad = pytest.importorskip("silero_vad.utils_vad")
    finally:
        torch.set_num_threads(threads)
    from importlib import resources

    audio = speech_60s[0][: 8 * SR]
    ours = vad.speech_probabilities(audio)
    path = resources.files("silero_vad.data").joinpath("silero_vad.onnx")
    reference = utils_vad.OnnxWrapper(str(path), force_onnx_cpu=True)
    theirs = reference.audio_forward(torch.from_numpy(audio)[None], SR)[0].numpy()
    assert ours.shape == theirs.shape == (250,)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_blockwise_framing_equals_whole_file_framing(speech_60s):
    """Framing 16 s at a time (context carried over) gives the probabilities of
    framing the whole minute at once; a FlacAudio of the same file gives them too."""
    from s2s_models.audio import FlacAudio

    audio = speech_60s[0]
    frames = vad.frame_audio(audio)  # the whole file framed at once
    session = vad.load_vad_session()
    h = c = np.zeros((1, 1, 128), dtype=np.float32)
    whole = []
    for first in range(0, len(frames), vad.MAX_BLOCK_FRAMES):
        p, h, c = session.run(
            ["speech_probs", "hn", "cn"],
            {"input": frames[first : first + vad.MAX_BLOCK_FRAMES], "h": h, "c": c},
        )
        whole.append(p.reshape(-1))
    ours = vad.speech_probabilities(audio)
    assert len(frames) > 3 * vad.MAX_BLOCK_FRAMES  # several blocks were crossed
    np.testing.assert_array_equal(ours, np.concatenate(whole))
    lazy = FlacAudio((FIXTURES / "speech_60s.flac").read_bytes())
    np.testing.assert_array_equal(vad.speech_probabilities(lazy), ours)


def test_loading_the_vad_leaves_torch_threads_alone():
    """The package's own import runs torch.set_num_threads(1); ours must not, or the
    Whisper model in the same process would run on one core."""
    code = (
        "import sys, torch; torch.set_num_threads(2); "
        "from s2s_models.whisper import vad; vad.load_vad_session(); "
        "vad.speech_timestamps(__import__('numpy').zeros(16000, 'float32')); "
        "print(torch.get_num_threads(), 'silero_vad' in sys.modules)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])  # fmt: skip
    assert out.stdout.split() == ["2", "False"]


def test_silence_and_noise_have_no_speech():
    rng = np.random.default_rng(0)
    assert vad.speech_timestamps(np.zeros(5 * SR, dtype=np.float32)) == []
    noise = (0.003 * rng.standard_normal(5 * SR)).astype(np.float32)
    assert vad.speech_timestamps(noise) == []
    assert vad.speech_timestamps(np.zeros(0, dtype=np.float32)) == []


def test_real_speech_regions_follow_the_clips(speech_60s):
    audio, meta = speech_60s
    regions = vad.speech_timestamps(audio)
    clips = [(it["start_s"], it["end_s"]) for it in meta["items"]]
    assert regions, "no speech found in real speech"
    # every clip is mostly covered by detected speech
    for clip in clips:
        covered = sum(_overlap(clip, r) for r in regions)
        assert covered > 0.7 * (clip[1] - clip[0]), clip
    # the 7 s silence between the third and fourth clip is not speech
    gap = (clips[2][1] + 0.5, clips[3][0] - 0.5)
    assert sum(_overlap(gap, r) for r in regions) == 0.0
    starts = [r[0] for r in regions]
    assert starts == sorted(starts)
    assert all(a < b for a, b in regions)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(regions, regions[1:], strict=False))


def test_state_machine_on_synthetic_probabilities():
    opts = vad.VadOptions(min_silence_s=0.2, speech_pad_s=0.0, min_speech_s=0.1)
    n = int(round(1 / vad.FRAME_S))  # ~31 frames per second
    probs = np.concatenate(
        [
            np.full(n, 0.05),  # 0-1 s silence
            np.full(n, 0.9),  # 1-2 s speech
            np.full(3, 0.1),  # 96 ms dip: shorter than min_silence, stays speech
            np.full(n, 0.9),
            np.full(2 * n, 0.02),  # long pause ends the region
            np.full(2, 0.95),  # 64 ms blip: shorter than min_speech, dropped
            np.full(n, 0.02),
        ]
    )
    total = len(probs) * vad.FRAME_S
    regions = vad.probabilities_to_timestamps(probs, total, opts)
    assert len(regions) == 1
    start, end = regions[0]
    assert start == pytest.approx(n * vad.FRAME_S, abs=1e-6)
    assert end == pytest.approx((3 * n + 3) * vad.FRAME_S, abs=1e-6)


def test_padding_shares_short_gaps():
    opts = vad.VadOptions(min_silence_s=0.1, speech_pad_s=0.3, min_speech_s=0.0)
    probs = np.array([0.0] * 10 + [0.9] * 20 + [0.0] * 10 + [0.9] * 20 + [0.0] * 40)
    total = len(probs) * vad.FRAME_S
    (a0, a1), (b0, b1) = vad.probabilities_to_timestamps(probs, total, opts)
    assert a0 == pytest.approx(10 * vad.FRAME_S - 0.3, abs=1e-3)
    # the 0.32 s gap is narrower than two pads: both regions meet in its middle
    assert a1 == pytest.approx(b0, abs=1e-3)
    assert a1 == pytest.approx(35 * vad.FRAME_S, abs=1e-3)
    assert b1 == pytest.approx(60 * vad.FRAME_S + 0.3, abs=1e-3)


def test_long_region_is_cut_at_the_quietest_frame():
    total = 75.0
    n_frames = int(total / vad.FRAME_S)
    scores = np.full(n_frames, 0.9)
    quiet = int(22.0 / vad.FRAME_S)
    scores[quiet] = 0.1
    quiet2 = int(47.0 / vad.FRAME_S)
    scores[quiet2] = 0.2
    options = vad.ChunkOptions()
    pieces = vad.split_long_region(0.0, total, scores, options)
    assert [round(b, 3) for _, b in pieces[:-1]] == [
        round(quiet * vad.FRAME_S, 3),
        round(quiet2 * vad.FRAME_S, 3),
    ]
    assert pieces[-1][1] == total
    assert all(b - a <= 30.0 for a, b in pieces)
    # contiguous: nothing of the region is lost
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(pieces, pieces[1:], strict=False))
    # without scores: equal parts
    even = vad.split_long_region(0.0, total, None, options)
    assert [b - a for a, b in even] == pytest.approx([25.0, 25.0, 25.0])
    assert vad.split_long_region(3.0, 20.0, scores, options) == [(3.0, 20.0)]


def test_options_verify():
    with pytest.raises(ValueError):
        vad.VadOptions(threshold=1.5).verify()
    with pytest.raises(ValueError):
        vad.VadOptions(threshold=0.5, neg_threshold=0.7).verify()
    with pytest.raises(ValueError):
        vad.ChunkOptions(max_chunk_s=0.5).verify()
    assert vad.VadOptions(threshold=0.5).silence_threshold == pytest.approx(0.35)
