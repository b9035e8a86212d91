"""Stage `audio`: the waveform of every mel, as a Hugging Face `datasets` Audio
column (FLAC bytes), plus the LJSpeech-style export of that stage.

Vocoders (``--vocoder``). A vocoder reads one mel definition
(``s2s_models.vocoders.mels``); asking for one that does not read the voice's mel is
refused before any work, since it would only make noise:

* ``auto``: a teacher engine's own audio (stored by the `mels` stage); for SpeechT5,
  the voice's HiFi-GAN (``VOICE/vocoder/``) when it has one, else the pretrained
  universal HiFi-GAN for a ``hifigan-22k`` voice, else Griffin-Lim;
* ``universal`` / ``ljspeech``: the pretrained HiFi-GAN V1 generators
  (``hifigan-22k``; ``s2s_models.vocoders.pretrained``, the 'tts' extra);
* ``hifigan``: the voice's HiFi-GAN (an error when the voice has none);
* ``griffinlim``: Griffin-Lim from the mel, either definition (no weights; robotic
  but always there);
* a path: a Hugging Face ``SpeechT5HifiGan`` folder (``speecht5-16k``), or a
  jik876/hifi-gan generator file with its training ``config.json`` beside it (the
  definition whose sizes its config names).

The output is mono 16-bit FLAC at the mel definition's rate (16 kHz, or 22,050 Hz for
``hifigan-22k`` voices; a teacher's audio at the run's rate); `path` in the audio
struct is ``<utt_id>.flac`` so that `datasets` can name the file it decodes.
HiFi-GAN runs in length-sorted padded batches, in bfloat16 on a CPU with native
bfloat16 support (AMX or AVX512-BF16) or a CUDA device, else float32.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import soundfile as sf
import torch

from s2s_models.device import resolve_device
from s2s_models.vocoders import (
    GriffinLimOptions,
    griffin_lim_from_log_mel,
    load_hf_hifigan,
    load_jik876_hifigan,
)
from s2s_models.vocoders.mels import (
    HIFIGAN_22K,
    MEL_DEFINITIONS,
    SPEECHT5_16K,
    get_mel_definition,
)
from s2s_models.vocoders.pretrained import (
    PRETRAINED_HIFIGAN,
    PRETRAINED_MEL,
    PretrainedMissing,
    pretrained_hifigan_files,
)
from s2s_models.whisper.checkpoints import cpu_has_fast_bf16
from tasks.codecs import AUDIO_STRUCT, audio_cell, decode_flac
from tasks.stage import (
    ROW_STATUS,
    StageSpec,
    error_text,
    failed_row,
    fingerprint,
    read_stage,
    run_isolating_failures,
)
from tasks.tts.engines import (
    TEACHERS,
    EngineError,
    file_fingerprint,
    resolve_voice_dir,
    run_mel,
)
from tasks.tts.mels import MELS, TEXT_COLUMNS, TTS_MEL

VOCODER_NAMES = ("auto", "hifigan", "griffinlim", *PRETRAINED_HIFIGAN)
MIN_GRIFFINLIM_FRAMES = 8
HIFIGAN_FRAMES_PER_BATCH = 8192  # padded mel frames per HiFi-GAN call (~95-131 s)


@dataclass(frozen=True)
class VocoderSpec:
    kind: str  # engine | hifigan | griffinlim
    path: str | None  # HiFi-GAN folder or generator file
    fingerprint: str
    mel: str | None = None  # the mel definition it reads (None: engine audio)


def resolve_vocoder(
    spec: str, engine: str, voice: str, mel: str = "auto"
) -> VocoderSpec:
    """What `--vocoder spec` means for this engine, voice and run mel (`--mel`);
    raises EngineError with the reason when it cannot be had or would read another
    mel than the voice predicts."""
    wanted = run_mel(engine, voice, mel)
    if spec == "auto" and engine in TEACHERS:
        return VocoderSpec("engine", None, fingerprint("engine"))
    if spec == "griffinlim":
        fp = fingerprint("griffinlim", GriffinLimOptions(), wanted.name)
        return VocoderSpec("griffinlim", None, fp, wanted.name)
    if spec in ("auto", "hifigan"):
        own = resolve_voice_dir(voice) / "vocoder" if engine == "speecht5" else None
        if own is not None and (own / "config.json").exists():
            return _matching(_hifigan_spec(own), spec, voice, wanted.name)
        if spec == "auto" and wanted.name == PRETRAINED_MEL.name:
            return resolve_vocoder("universal", engine, voice, mel)
        if spec == "auto":
            return resolve_vocoder("griffinlim", engine, voice, mel)
        raise EngineError(
            "--vocoder hifigan: the voice has no vocoder/ folder; give --vocoder "
            "universal, PATH (a SpeechT5HifiGan folder or a hifi-gan generator file) "
            "or --vocoder griffinlim"
        )
    if spec in PRETRAINED_HIFIGAN:
        try:
            checkpoint, _ = pretrained_hifigan_files(spec)
        except PretrainedMissing as exc:
            raise EngineError(f"--vocoder {spec}: {exc}") from exc
        vocoder = _hifigan_spec(checkpoint)
        return _matching(vocoder, spec, voice, wanted.name)
    return _matching(_hifigan_spec(Path(spec)), spec, voice, wanted.name)


def _matching(vocoder: VocoderSpec, asked: str, voice: str, mel: str) -> VocoderSpec:
    if vocoder.mel != mel:
        reads = get_mel_definition(vocoder.mel)
        has = get_mel_definition(mel)
        raise EngineError(
            f"--vocoder {asked} reads the {reads.name} mel ({reads.sample_rate} Hz) "
            f"but voice {voice} gives {has.name} mels ({has.sample_rate} Hz): that "
            "would be noise; use --vocoder auto or griffinlim"
        )
    return vocoder


def _hifigan_mel(config: dict) -> str:
    """The mel definition a HiFi-GAN config describes (SpeechT5HifiGan: 16 kHz)."""
    if config.get("model_type") == "speecht5_hifigan":
        return SPEECHT5_16K.name
    sizes = (
        config.get("sampling_rate"),
        config.get("n_fft"),
        config.get("hop_size"),
        config.get("win_size"),
        config.get("num_mels", 80),
        config.get("fmin"),
        config.get("fmax"),
    )
    for d in MEL_DEFINITIONS.values():
        ours = (d.sample_rate, d.n_fft, d.hop_length, d.win_length, d.n_mels)
        if sizes == (*ours, d.fmin, d.fmax) and d.log_base == "ln":
            return d.name
    raise EngineError(
        f"HiFi-GAN config (rate, n_fft, hop, window, mels, fmin, fmax) = {sizes} "
        f"matches no mel definition we compute ({HIFIGAN_22K.name} is "
        "22050, 1024, 256, 1024, 80, 0, 8000)"
    )


def _hifigan_spec(path: Path) -> VocoderSpec:
    if path.is_dir() and (path / "config.json").exists():
        files = sorted(p for p in path.iterdir() if p.is_file())
        config = path / "config.json"
    elif path.is_file() and (path.parent / "config.json").exists():
        files = [path, path.parent / "config.json"]
        config = path.parent / "config.json"
    else:
        raise EngineError(
            f"--vocoder {path}: not a HiFi-GAN folder (config.json + weights) nor a "
            "generator file with config.json beside it"
        )
    mel = _hifigan_mel(json.loads(config.read_text()))
    fp = fingerprint("hifigan", [(p.name, file_fingerprint(p)) for p in files])
    return VocoderSpec("hifigan", str(path), fp, mel)


@functools.lru_cache(maxsize=2)
def load_hifigan(path: str):
    p = Path(path)
    if p.is_dir():
        return load_hf_hifigan(p)
    return load_jik876_hifigan(p, p.parent / "config.json")


def hifigan_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware runs it natively (CUDA, or a CPU with AMX /
    AVX512-BF16), else float32."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively: CUDA, or a CPU whose flags list
    AMX or AVX512-BF16. (torch's own ``get_cpu_capability()`` says "AVX512" on an
    AMX Xeon, so it cannot tell.)"""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_fast_bf16()


def vocode(spec: VocoderSpec, mel: np.ndarray) -> np.ndarray:
    """(n_frames, 80) log-mel under ``spec.mel`` -> (n_frames * 256,) float32 at
    that definition's rate."""
    definition = get_mel_definition(spec.mel or SPEECHT5_16K.name)
    hop = definition.hop_length
    tensor = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
    with torch.inference_mode():
        if spec.kind == "griffinlim":
            # Griffin-Lim's reflect-padded STFT needs a few frames: pad very short
            # mels with silence (the log floor) and cut the padding's samples off.
            n_frames = tensor.shape[0]
            pad = max(0, MIN_GRIFFINLIM_FRAMES - n_frames)
            tensor = torch.nn.functional.pad(
                tensor, (0, 0, 0, pad), value=definition.silence
            )
            audio = griffin_lim_from_log_mel(
                tensor, GriffinLimOptions(), definition
            ).numpy()
            return audio[: n_frames * hop]
        generator = load_hifigan(spec.path).cpu()
        return generator(tensor[None])[0].numpy()


def vocode_hifigan_batches(
    generator,
    mels: list[np.ndarray],
    device: str = "auto",
    silence: float = SPEECHT5_16K.silence,
    dtype: torch.dtype | None = None,
) -> list[tuple[np.ndarray | Exception, float]]:
    """HiFi-GAN over length-sorted, padded batches on ``device``: (audio of
    ``n_frames * hop`` samples, seconds) per mel, or the exception for a mel that
    fails alone (a batch that raises is redone item by item). The padding is
    ``silence`` (the mel definition's floor); only the last frames' samples can see
    it, through the receptive field. ``dtype`` (default ``hifigan_dtype``) is the
    compute type. Seconds are the batch's wall time shared out by frames."""
    target = resolve_device(device)
    dtype = dtype or hifigan_dtype(target)
    generator.to(target)
    hop = generator.dims.hop_length
    order = sorted(range(len(mels)), key=lambda i: len(mels[i]))
    out: list = [None] * len(mels)

    def run(batch: list[int]) -> list[np.ndarray]:
        tensors = [
            torch.from_numpy(np.asarray(mels[i], dtype=np.float32)) for i in batch
        ]
        padded = torch.nn.utils.rnn.pad_sequence(
            tensors, batch_first=True, padding_value=silence
        )
        with torch.inference_mode():
            if dtype == torch.float32:
                audio = generator(padded.to(target))
            else:
                with torch.autocast(target.type, dtype=dtype):
                    audio = generator(padded.to(target))
            audio = audio.float().cpu().numpy()
        return [audio[j, : len(t) * hop] for j, t in enumerate(tensors)]

    start = 0
    while start < len(order):
        batch = [order[start]]  # ascending: each mel added is the longest so far
        while (
            start + len(batch) < len(order)
            and (len(batch) + 1) * len(mels[order[start + len(batch)]])
            <= HIFIGAN_FRAMES_PER_BATCH
        ):
            batch.append(order[start + len(batch)])
        start += len(batch)
        t0 = time.perf_counter()
        audios = run_isolating_failures(run, batch)
        wall = time.perf_counter() - t0
        frames = sum(len(mels[i]) for i in batch) or 1
        for i, audio in zip(batch, audios, strict=True):
            out[i] = (audio, wall * len(mels[i]) / frames)
    return out


@dataclass(frozen=True)
class AudioParams:
    """What the audio stage runs with."""

    vocoder: VocoderSpec  # `resolve_vocoder`
    device: str = "auto"  # HiFi-GAN; Griffin-Lim runs on the CPU


def audio_key(mel_key: str, params: AudioParams) -> str:
    spec = params.vocoder
    return fingerprint(AUDIO.name, mel_key, spec.kind, spec.fingerprint)


def _audio_row(
    row: dict, audio: np.ndarray, kind: str, seconds: float, rate: int
) -> dict:
    if audio.size == 0 or not np.all(np.isfinite(audio)):
        return failed_row(row, "vocoder gave empty or NaN audio")
    return {
        **row,
        "audio": audio_cell(audio, rate, row["utt_id"]),
        "sampling_rate": rate,
        "duration_s": audio.size / rate,
        "vocoder": kind,
        "vocode_seconds": seconds,
        "status": "ok",
        "error": None,
    }


def compute_audio(rows: Iterable[dict], params: AudioParams) -> list[dict]:
    """Pure stage logic: one audio row per mels row (`TTS_MEL` cells; teacher rows
    carry `engine_audio`). HiFi-GAN runs in padded batches on `params.device`;
    Griffin-Lim runs on the CPU, one mel at a time."""
    spec = params.vocoder
    rows = list(rows)
    mels = [TTS_MEL.read(row) if spec.kind != "engine" else None for row in rows]
    wrong = {
        i
        for i, row in enumerate(rows)
        if spec.kind != "engine" and row.get("mel") != spec.mel
    }
    rate = get_mel_definition(spec.mel).sample_rate if spec.mel else None
    batched: dict[int, tuple] = {}
    if spec.kind == "hifigan":
        have = [i for i, mel in enumerate(mels) if mel is not None and i not in wrong]
        results = vocode_hifigan_batches(
            load_hifigan(spec.path),
            [mels[i] for i in have],
            params.device,
            get_mel_definition(spec.mel).silence,
        )
        batched = dict(zip(have, results, strict=True))
    out = []
    for index, (full, mel) in enumerate(zip(rows, mels, strict=True)):
        row = {name: full[name] for name, _ in TEXT_COLUMNS}
        t0 = time.perf_counter()
        try:
            if index in wrong:
                raise ValueError(
                    f"a {full.get('mel')} mel; the vocoder reads {spec.mel}"
                )
            if index in batched:
                audio, seconds = batched[index]
                if isinstance(audio, Exception):
                    raise audio
                out.append(_audio_row(row, audio, spec.kind, seconds, rate))
                continue
            row_rate = rate
            if spec.kind == "engine":
                if full.get("engine_audio") is None:
                    raise ValueError("no engine audio in the mels row")
                audio, row_rate = decode_flac(full["engine_audio"]["bytes"])
                kind = "engine"
            else:
                audio, kind = vocode(spec, mel), spec.kind
        except Exception as exc:  # noqa: BLE001 - one bad item is a failed row
            out.append(failed_row(row, error_text(exc)))
            continue
        out.append(_audio_row(row, audio, kind, time.perf_counter() - t0, row_rate))
    return out


AUDIO = StageSpec(
    name="audio",
    version=1,
    columns=(
        *TEXT_COLUMNS,
        ("audio", AUDIO_STRUCT),  # mono FLAC, 16-bit, `sampling_rate` Hz (16 kHz or
        # 22,050 Hz: the mel definition's rate)
        ("sampling_rate", pa.int32()),
        ("duration_s", pa.float64()),
        ("vocoder", pa.string()),  # hifigan | griffinlim | engine (teacher's audio)
        ("vocode_seconds", pa.float64()),
        *ROW_STATUS,
    ),
    upstream=MELS,
    key=audio_key,
    compute=compute_audio,
    inputs=(
        "text",
        "normalized_text",
        "speaker",
        "mel",
        *TTS_MEL.columns,
        "engine_audio",
    ),
)


# ---------------------------------------------------------------- LJSpeech export


def _safe_id(utt_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", utt_id)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").replace("|", " ").split())


def export_ljspeech(run_dir: str, out_dir: str) -> dict:
    """Write ``out_dir/wavs/<utt_id>.wav`` (16-bit PCM at the run's rate) and
    ``out_dir/metadata.csv`` (``id|text|normalized text``, no header, LJSpeech
    style) for every ok row of the audio stage. Returns counts and paths.

    `|` and line breaks inside texts become spaces; characters outside
    ``[A-Za-z0-9._-]`` in ids become ``_`` (file names stay portable).
    """
    columns = ["utt_id", "text", "normalized_text", "audio", "status"]
    table = read_stage(run_dir, AUDIO, columns)
    wavs = Path(out_dir) / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    lines, seen = [], set()
    for row in sorted(table.to_pylist(), key=lambda r: r["utt_id"]):
        if row["status"] != "ok":
            continue
        name = _safe_id(row["utt_id"])
        if name in seen:
            raise ValueError(f"two utt_ids map to the same file name {name}.wav")
        seen.add(name)
        audio, rate = decode_flac(row["audio"]["bytes"])
        sf.write(wavs / f"{name}.wav", audio, rate, subtype="PCM_16")
        lines.append(
            f"{name}|{_one_line(row['text'])}|{_one_line(row['normalized_text'])}"
        )
    metadata = Path(out_dir) / "metadata.csv"
    tmp = metadata.with_name(".metadata.csv.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(metadata)
    return {"n_items": len(lines), "metadata": str(metadata), "wavs": str(wavs)}
