"""Fixtures shared by the model tests."""

import json

import pytest
import soundfile as sf

from tests.conftest import FIXTURES


@pytest.fixture(scope="session")
def speech_60s():
    """(audio, meta) of tests/fixtures/longform/speech_60s.flac: five public clips
    joined with 1-7 s silences, 16 kHz; meta lists each clip's times and text."""
    folder = FIXTURES / "longform"
    audio, sr = sf.read(folder / "speech_60s.flac", dtype="float32")
    assert sr == 16_000
    meta = json.loads((folder / "speech_60s.json").read_text())
    return audio, meta
