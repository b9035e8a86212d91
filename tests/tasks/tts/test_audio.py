"""audio stage logic: vocoder choice, Griffin-Lim and engine audio rows, the
LJSpeech export, and loading the stage with Hugging Face `datasets`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from s2s_models.vocoders import speecht5_log_mel
from tasks.codecs import decode_flac, encode_flac
from tasks.stage import list_parts, write_part
from tasks.tts.audio import (
    AUDIO,
    AudioParams,
    compute_audio,
    export_ljspeech,
    resolve_vocoder,
    vocode,
)
from tasks.tts.engines import EngineError
from tasks.tts.mels import TTS_MEL
from tests.fixtures.tts.tiny_voice import make_tiny_voice

SR = 16000


def _tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _row(
    utt_id: str,
    text: str = "Some text.",
    mel=None,
    audio=None,
    mel_name: str = "speecht5-16k",
) -> dict:
    """A mels row as the audio stage reads it: a mel, or a teacher's audio."""
    row = {"utt_id": utt_id, "input_key": f"k-{utt_id}", "text": text}
    row.update(normalized_text=text, speaker=None, engine_audio=None, mel=mel_name)
    row.update(
        TTS_MEL.cells(mel) if mel is not None else dict.fromkeys(TTS_MEL.columns)
    )
    if audio is not None:
        row["engine_audio"] = {"bytes": encode_flac(audio, SR), "path": None}
    return row


def _vocode(rows: list[dict], spec) -> list[dict]:
    return compute_audio(rows, AudioParams(spec, "cpu"))


def test_resolve_vocoder(tmp_path):
    voice = str(make_tiny_voice(tmp_path / "voice"))
    assert resolve_vocoder("auto", "piper", "default").kind == "engine"
    assert resolve_vocoder("auto", "speecht5", voice).kind == "griffinlim"
    with pytest.raises(EngineError, match="no vocoder/ folder"):
        resolve_vocoder("hifigan", "speecht5", voice)
    with pytest.raises(EngineError, match="not a HiFi-GAN folder"):
        resolve_vocoder(str(tmp_path / "nowhere"), "speecht5", voice)
    # the shipped default voice predicts the hifigan-22k mel and has no HiFi-GAN of
    # its own: the pretrained universal generator
    default = resolve_vocoder("auto", "speecht5", "default")
    assert (default.kind, default.mel) == ("hifigan", "hifigan-22k")
    assert Path(default.path).name == "generator_universal.pth.tar"


def test_griffinlim_and_engine_rows():
    audio = _tone(0.5)
    mel = speecht5_log_mel(audio).numpy()  # (n_frames, 80)
    spec = resolve_vocoder("griffinlim", "espeak", "default")
    rows = _vocode([_row("a", mel=mel), _row("short", mel=mel[:2])], spec)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["sampling_rate"] == SR and rows[0]["vocoder"] == "griffinlim"
    assert rows[0]["duration_s"] == pytest.approx(mel.shape[0] * 256 / SR)
    assert rows[1]["duration_s"] == pytest.approx(2 * 256 / SR)  # padded, then cut
    back, rate = decode_flac(rows[0]["audio"]["bytes"])
    assert rate == SR and rows[0]["audio"]["path"] == "a.flac"
    # Griffin-Lim keeps the tone's pitch: the spectral peak stays at 220 Hz
    peak_hz = np.argmax(np.abs(np.fft.rfft(back))) * SR / back.size
    assert abs(peak_hz - 220) < 10

    engine = resolve_vocoder("auto", "piper", "default")
    out = _vocode([_row("t", audio=audio), _row("m")], engine)
    assert out[0]["vocoder"] == "engine" and out[0]["duration_s"] == 0.5
    assert out[1]["status"] == "failed" and "no engine audio" in out[1]["error"]
    assert vocode(spec, mel).dtype == np.float32
    # the stored mel is float16: the same vocoding as from the float16 matrix
    (row,) = _vocode([_row("a", mel=mel)], spec)
    f16 = vocode(spec, mel.astype(np.float16))
    assert np.abs(decode_flac(row["audio"]["bytes"])[0] - f16).max() < 1e-4


def _write_audio_stage(run_dir, rows):
    table = pa.Table.from_pylist(rows, schema=AUDIO.schema)
    return write_part(run_dir, AUDIO, 0, table)


def test_ljspeech_export_and_datasets_load(tmp_path):
    run = tmp_path / "run"
    spec = resolve_vocoder("auto", "piper", "default")
    sources = [
        _row("utt/1", "Hello | there.", audio=_tone(0.3)),
        _row("utt2", "Second\nline.", audio=_tone(0.2, 440)),
        _row("bad"),
    ]
    _write_audio_stage(run, _vocode(sources, spec))

    out = export_ljspeech(str(run), str(tmp_path / "lj"))
    assert out["n_items"] == 2
    lines = (tmp_path / "lj" / "metadata.csv").read_text().splitlines()
    # sorted by utt_id ("utt/1" < "utt2"); "/" in the id becomes "_" in the file
    assert lines == [
        "utt_1|Hello there.|Hello there.",
        "utt2|Second line.|Second line.",
    ]
    audio, rate = sf.read(tmp_path / "lj" / "wavs" / "utt_1.wav")
    assert rate == SR and len(audio) == int(0.3 * SR)


def test_audio_stage_loads_with_datasets(tmp_path):
    """`datasets` reads the stage's Parquet and casts the struct to its Audio
    feature; decoding needs `torchcodec` (datasets >= 4), skipped when absent."""
    datasets = pytest.importorskip("datasets")
    run = tmp_path / "run"
    spec = resolve_vocoder("auto", "piper", "default")
    _write_audio_stage(run, _vocode([_row("a", audio=_tone(0.3))], spec))
    parts = [str(p) for p in list_parts(run, AUDIO)]
    ds = datasets.load_dataset("parquet", data_files=parts, split="train")
    assert ds.num_rows == 1 and ds[0]["text"] == "Some text."
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=SR))
    assert isinstance(ds.features["audio"], datasets.Audio)
    raw = ds.cast_column("audio", datasets.Audio(decode=False))[0]["audio"]
    assert raw["path"] == "a.flac" and decode_flac(raw["bytes"])[0].size == 0.3 * SR
    try:
        decoded = ds[0]["audio"]
    except ImportError as exc:
        pytest.skip(f"datasets cannot decode audio here: {exc}")
    samples = decoded.get_all_samples()
    assert samples.sample_rate == SR and samples.data.shape[-1] == int(0.3 * SR)


def _tiny_hifigan(tmp_path) -> str:
    """A small random jik876-layout HiFi-GAN for the hifigan-22k mel (its config
    names that mel's sizes; hop 256 samples)."""
    import json

    import torch

    from s2s_models.vocoders import HiFiGanDims, HiFiGanGenerator

    config = {
        "upsample_initial_channel": 32,
        "upsample_rates": [8, 8, 4],
        "upsample_kernel_sizes": [16, 16, 8],
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3]],
        "resblock": "2",
        "sampling_rate": 22050,
        "n_fft": 1024,
        "hop_size": 256,
        "win_size": 1024,
        "fmin": 0,
        "fmax": 8000,
    }
    torch.manual_seed(0)
    model = HiFiGanGenerator(HiFiGanDims.from_jik876_config(config))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    state = {k: v for k, v in model.state_dict().items() if k not in ("mean", "scale")}
    torch.save({"generator": state}, tmp_path / "g_test")
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path / "g_test")


def test_hifigan_batches_equal_one_by_one_but_the_tail(tmp_path, monkeypatch):
    """Padded, length-sorted HiFi-GAN batches give each mel its own length and the
    audio it gets alone, except the last samples that see the padding."""
    import torch

    import tasks.tts.audio as vocode_module

    # the single-mel path computes in float32: so do the batches here (on a CPU with
    # native bfloat16 they would run in it, and differ by its rounding)
    monkeypatch.setattr(vocode_module, "hifigan_dtype", lambda device: torch.float32)
    spec = resolve_vocoder(_tiny_hifigan(tmp_path), "piper", "default", "hifigan-22k")
    assert spec.kind == "hifigan" and spec.mel == "hifigan-22k"
    rng = np.random.default_rng(0)
    # float16 values: what the mels stage stores
    mels = [rng.normal(-5.0, 1.0, (n, 80)).astype(np.float16) for n in (40, 7, 25)]
    alone = [vocode(spec, m) for m in mels]
    mel_rows = [
        _row(u, mel=m, mel_name="hifigan-22k") for u, m in zip("abc", mels, strict=True)
    ]
    rows = _vocode([*mel_rows, _row("none")], spec)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert {r["sampling_rate"] for r in rows[:3]} == {22050}
    tail = 256 * 4  # the receptive field reaches about this far into the padding
    for row, one in zip(rows, alone, strict=False):
        audio = decode_flac(row["audio"]["bytes"])[0]
        assert audio.size == one.size and row["vocoder"] == "hifigan"
        head = slice(0, one.size - tail)
        assert np.abs(audio[head] - one[head]).max() < 2e-4  # 16-bit FLAC rounding
    assert sum(r["vocode_seconds"] for r in rows[:3]) > 0
    # with a budget of one mel per batch, each mel is vocoded alone: exactly the
    # single-mel path
    small = vocode_module.vocode_hifigan_batches(
        vocode_module.load_hifigan(spec.path), mels, "cpu"
    )
    monkeypatch.setattr(vocode_module, "HIFIGAN_FRAMES_PER_BATCH", 1)
    single = vocode_module.vocode_hifigan_batches(
        vocode_module.load_hifigan(spec.path), mels, "cpu"
    )
    for (a, _), (b, _), one in zip(small, single, alone, strict=True):
        assert np.array_equal(b, one) and a.shape == one.shape
