"""train-tts end to end on a tiny model and a synthetic dataset (chirps standing in
for speech): the mechanics of data preparation, held-out exclusion, checkpoints,
resume, the WER curve and loading the result as a voice. Whether a real voice learns
to speak is measured by the training run recorded in the voice's model card."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import torch

from flows.train_tts import train_tts
from s2s_models.speecht5 import SpeechT5TTS
from s2s_models.speecht5.phonemes import PhonemeTokenizer
from s2s_models.speecht5.training import collate, decoder_inputs, tts_losses
from tasks.stage import write_part
from tasks.tts.audio import AUDIO
from tasks.tts.engines import load_speecht5_voice
from tasks.tts.training.trainer import TrainConfig, Trainer, lr_at

pytestmark = pytest.mark.required  # a main job: never skipped on CI

TINY = TrainConfig(
    n_state=32,
    n_head=2,
    n_ffn=64,
    n_text_layer=1,
    n_speech_layer=1,
    n_postnet_units=32,
    frames_per_batch=800,
    warmup_steps=2,
    lr=3e-3,
)
TEXTS = [
    "The cat sat on the mat.",
    "A bird sang in the tall tree.",
    "We walked home in the rain.",
    "She read the letter twice.",
    "Bread and butter for breakfast.",
    "The river ran fast and cold.",
]
HELDOUT = ["This sentence is held out.", "So is this one, friend."]


def _flac(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, 16_000, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _chirp(seconds: float, f0: float) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * (f0 + 200 * t) * t)).astype(np.float32)


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_chirp_dataset(tmp_path / "dataset")


def write_chirp_dataset(run) -> str:
    """An `audio` stage of chirps for TEXTS, the first held-out sentence (to be
    left out) and a failed row; returns its run folder."""
    rows = []
    for i, text in enumerate(TEXTS + HELDOUT[:1] + ["broken"]):
        ok = text != "broken"
        audio = _chirp(0.8 + 0.1 * i, 200 + 40 * i)
        rows.append(
            {
                "utt_id": f"u{i}",
                "input_key": f"k{i}",
                "text": text,
                "normalized_text": text,
                "speaker": None,
                "audio": {"bytes": _flac(audio), "path": f"u{i}.flac"} if ok else None,
                "sampling_rate": 16_000,
                "duration_s": len(audio) / 16_000,
                "vocoder": "engine",
                "vocode_seconds": 0.0,
                "status": "ok" if ok else "failed",
                "error": None if ok else "x",
            }
        )
    write_part(run, AUDIO, 0, pa.Table.from_pylist(rows, schema=AUDIO.schema))
    return str(run)


def test_losses_teacher_forcing_layout():
    tok = PhonemeTokenizer(PhonemeTokenizer.default_symbols())
    torch.manual_seed(0)
    mels = [torch.randn(7, 80), torch.randn(4, 80)]
    batch = collate([tok.encode(t).ids for t in TEXTS[:2]], mels, 3, tok.pad_id)
    assert batch.target.shape == (2, 9, 80)
    inputs = decoder_inputs(batch.target, 3)
    assert torch.equal(inputs[:, 0], torch.zeros(2, 80))  # a zero frame starts
    assert torch.equal(inputs[0, 1], mels[0][2])  # then the last frame of each step
    assert torch.equal(inputs[0, 2], mels[0][5])
    net = SpeechT5TTS(TINY.dims(len(tok))).eval()
    loss, parts, out = tts_losses(net, batch)
    assert out.mels.shape == batch.target.shape
    assert all(np.isfinite(v) for v in parts.values())
    # padding frames never count: changing them leaves every loss unchanged
    batch.target[1, 4:] = 99.0
    _, parts2, _ = tts_losses(net, batch)
    assert parts2["l1_before"] == pytest.approx(parts["l1_before"])
    assert parts2["stop_bce"] == pytest.approx(parts["stop_bce"])


@pytest.mark.usefixtures("prefect_harness")
def test_learning_rate_schedule_with_cooldown():
    plain = TrainConfig(lr=1e-3, warmup_steps=100)
    assert lr_at(49, plain) == pytest.approx(0.5e-3)  # warm-up
    assert lr_at(399, plain) == pytest.approx(0.5e-3)  # 1/sqrt decay
    cool = TrainConfig(lr=1e-3, warmup_steps=100, cooldown_start=399, cooldown_steps=10)
    assert lr_at(398, cool) == lr_at(398, plain)
    assert lr_at(399, cool) == pytest.approx(0.5e-3)
    assert lr_at(404, cool) == pytest.approx(0.25e-3)
    assert lr_at(409, cool) == 0.0 and lr_at(500, cool) == 0.0


def test_train_resume_and_use_as_voice(tmp_path, dataset):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(HELDOUT) + "\n")
    ckpt = tmp_path / "ckpt"
    kwargs = dict(
        dataset=dataset,
        ckpt_dir=str(ckpt),
        heldout_file=str(heldout),
        eval_every=4,
        eval_sentences=2,
        config=TINY,
    )
    first = train_tts(max_steps=8, **kwargs)
    assert first["step"] == 8
    # the failed row and the held-out sentence are not trained on
    assert first["data"] == {"failed": 1, "heldout": 1, "too_long": 0, "kept": 6}
    evals = [json.loads(x) for x in (ckpt / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [4, 8]
    # Measured (CPU, fixed seeds): at steps 4, 8 and 12 WER = CER = 1.0 (a voice
    # taught chirps says nothing Whisper writes down: every held-out word is
    # missed) and no stop failures (it learns to stop on the short chirps). The
    # bounds leave one sentence of two for the stop token, and room for a word
    # Whisper might invent on a chirp.
    assert all(e["n"] == 2 and e["stop_failures"] <= 0.5 for e in evals), evals
    assert all(0.95 <= e["tiny.en_wer"] <= 1.25 for e in evals), evals
    assert all(0.95 <= e["tiny.en_cer"] <= 1.25 for e in evals), evals
    losses = [
        json.loads(x)["loss"] for x in (ckpt / "log.jsonl").read_text().splitlines()
    ]
    assert losses[-1] < losses[0]  # it learns something even in 8 steps
    assert (ckpt / "wer_curve.png").stat().st_size > 1000
    for name in ("latest", "best"):
        assert {"config.json", "model.safetensors", "phonemes.json"} <= {
            p.name for p in (ckpt / name).iterdir()
        }

    # resume: continues from step 8 with the saved optimizer, cached data
    second = train_tts(max_steps=12, **kwargs)
    assert second["step"] == 12 and second["data"]["cached"] is True
    trainer = json.loads((ckpt / "latest" / "trainer.json").read_text())
    assert trainer["state"]["step"] == 12 and trainer["config"]["n_state"] == 32

    # cool-down: the rate falls linearly to zero over 4 more steps, then it stops;
    # rerunning keeps the schedule it began with
    third = train_tts(max_steps=1000, cooldown_steps=4, **kwargs)
    assert third["step"] == 16
    saved = json.loads((ckpt / "latest" / "trainer.json").read_text())["config"]
    assert (saved["cooldown_start"], saved["cooldown_steps"]) == (12, 4)
    assert train_tts(max_steps=1000, cooldown_steps=50, **kwargs)["step"] == 16

    voice = load_speecht5_voice(str(ckpt / "best"))
    assert isinstance(voice.tokenizer, PhonemeTokenizer)
    assert voice.model.dims.n_state == 32


def test_character_front_end_voice(tmp_path, dataset):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(HELDOUT) + "\n")
    ckpt = tmp_path / "chars"
    summary = train_tts(
        dataset=dataset,
        ckpt_dir=str(ckpt),
        heldout_file=str(heldout),
        max_steps=2,
        eval_every=2,
        eval_sentences=1,
        config=dataclasses.replace(TINY, front_end="characters"),
    )
    assert summary["step"] == 2
    voice = load_speecht5_voice(str(ckpt / "best"))
    assert voice.tokenizer.front_end == "characters"
    assert voice.model.dims.n_vocab == len(voice.tokenizer) == 39
    saved = json.loads((ckpt / "latest" / "trainer.json").read_text())["config"]
    assert saved["front_end"] == "characters"


def test_a_save_killed_between_its_renames_is_recovered(tmp_path):
    """`Trainer.save` renames `latest` aside, then the new folder into place: a
    kill between the two leaves no `latest`. The next Trainer takes the new
    complete folder (or the old one, when the new is incomplete)."""
    trainer = Trainer(tmp_path, TINY, "cpu")
    trainer.save("latest")
    trainer.state.step = 5
    trainer.save("latest")
    latest = tmp_path / "latest"
    (tmp_path / "latest").rename(tmp_path / ".latest.tmp-1")  # renamed aside...
    shutil.copytree(tmp_path / ".latest.tmp-1", tmp_path / ".latest.old-1")
    old_state = tmp_path / ".latest.old-1" / "trainer.json"
    old_state.write_text(old_state.read_text().replace('"step": 5', '"step": 0'))
    assert Trainer(tmp_path, TINY, "cpu").state.step == 5  # ...the new one wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]

    latest.rename(tmp_path / ".latest.old-2")  # the new one is half written
    shutil.copytree(tmp_path / ".latest.old-2", tmp_path / ".latest.tmp-2")
    (tmp_path / ".latest.tmp-2" / "trainer.json").write_text('{"conf')
    assert Trainer(tmp_path, TINY, "cpu").state.step == 5  # the old one is back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_logs_of_a_run_killed_before_its_first_checkpoint_are_dropped(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"step": 6, "loss": 9.3}\n{"step": 1')
    Trainer(tmp_path, TINY, "cpu")  # starts at step 0: nothing was saved
    assert (tmp_path / "log.jsonl").read_text() == ""


def test_warm_start_rescales_mel_units():
    """A log10-mel voice warm-starting a natural-log voice predicts, before any
    training, exactly its old mels in the new units (times ln 10)."""
    from s2s_models.speecht5.training import warm_start

    tok = PhonemeTokenizer(PhonemeTokenizer.default_symbols())
    torch.manual_seed(0)
    source = SpeechT5TTS(TINY.dims(len(tok))).eval()
    torch.manual_seed(1)
    target = SpeechT5TTS(TINY.dims(len(tok))).eval()
    k = float(np.log(10.0))
    counts = warm_start(target, source, k)
    assert counts["copied"] == len(source.state_dict()) and counts["fresh"] == 0
    batch = collate([tok.encode(TEXTS[0]).ids], [torch.randn(9, 80) - 4], 3, 1)
    inputs = decoder_inputs(batch.target, 3)
    with torch.no_grad():
        old = source(batch.input_ids, batch.attention_mask, inputs)
        new = target(batch.input_ids, batch.attention_mask, inputs * k)
    assert torch.allclose(
        new.mels_before_postnet, k * old.mels_before_postnet, atol=1e-4
    )
    assert torch.allclose(new.mels, k * old.mels, atol=1e-4)
    assert torch.allclose(new.stop_logits, old.stop_logits, atol=1e-5)
    # a model of other sizes keeps only the tensors whose shapes fit
    wide = SpeechT5TTS(dataclasses.replace(TINY, n_ffn=128).dims(len(tok)))
    partial = warm_start(wide, source)
    assert 0 < partial["copied"] < len(source.state_dict())
    assert partial["skipped"] == len(source.state_dict()) - partial["copied"]


def _dataset_22k(tmp_path) -> str:
    rows = []
    for i, text in enumerate(TEXTS):
        t = np.arange(int((0.8 + 0.1 * i) * 22050)) / 22050
        audio = (0.3 * np.sin(2 * np.pi * (200 + 40 * i + 200 * t) * t)).astype(
            np.float32
        )
        buf = io.BytesIO()
        sf.write(buf, audio, 22050, format="FLAC", subtype="PCM_16")
        rows.append(
            {
                "utt_id": f"u{i}",
                "input_key": f"k{i}",
                "text": text,
                "normalized_text": text,
                "speaker": None,
                "audio": {"bytes": buf.getvalue(), "path": f"u{i}.flac"},
                "sampling_rate": 22050,
                "duration_s": len(audio) / 22050,
                "vocoder": "engine",
                "vocode_seconds": 0.0,
                "status": "ok",
                "error": None,
            }
        )
    run = tmp_path / "dataset22"
    write_part(run, AUDIO, 0, pa.Table.from_pylist(rows, schema=AUDIO.schema))
    return str(run)


@pytest.mark.slow
@pytest.mark.usefixtures("universal_hifigan")
def test_hifigan_mel_voice_warm_started(tmp_path, dataset):
    """--mel hifigan-22k --init-from VOICE: a 22.05 kHz dataset, the source's tensors
    copied and rescaled, the voice's config naming its mel, evaluation through the
    universal HiFi-GAN; a 16 kHz dataset is refused with the fix."""
    from tasks.tts.engines import voice_mel
    from tests.fixtures.tts.tiny_voice import make_tiny_voice

    source = make_tiny_voice(tmp_path / "source", front_end="phonemes")
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(HELDOUT) + "\n")
    config = dataclasses.replace(TINY, mel="hifigan-22k", init_from=str(source))
    summary = train_tts(
        dataset=_dataset_22k(tmp_path),
        ckpt_dir=str(tmp_path / "ckpt22"),
        heldout_file=str(heldout),
        max_steps=2,
        eval_every=2,
        eval_sentences=1,
        config=config,
    )
    assert summary["step"] == 2 and summary["data"]["kept"] == len(TEXTS)
    best = tmp_path / "ckpt22" / "best"
    saved = json.loads((best / "config.json").read_text())
    assert (
        saved["mel"]["name"] == "hifigan-22k" and saved["mel"]["sample_rate"] == 22050
    )
    assert voice_mel(str(best)).name == "hifigan-22k"
    evals = (tmp_path / "ckpt22" / "eval.jsonl").read_text().splitlines()
    assert json.loads(evals[0])["n"] == 1
    trainer = json.loads((tmp_path / "ckpt22" / "latest" / "trainer.json").read_text())
    assert trainer["config"]["init_from"] == str(source)

    with pytest.raises(ValueError, match="synthesize ... --mel hifigan-22k"):
        train_tts(
            dataset=dataset,  # 16 kHz chirps
            ckpt_dir=str(tmp_path / "wrong"),
            heldout_file=str(heldout),
            max_steps=1,
            config=dataclasses.replace(config, init_from=None),
        )
