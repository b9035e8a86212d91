"""The Whisper models of a process: loaded once, fingerprinted by their files.

Used by the transcripts stage and by everything else that transcribes (the TTS
round trip, voice training's evaluations).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from s2s_models import load_asr
from s2s_models.whisper.checkpoints import DTYPES, resolve_checkpoint
from tasks.stage import file_sha256, fingerprint

_LOADING = threading.Lock()  # one load at a time: a preload and a shard share it


def get_asr(model: str, device: str, precision: str = "float32"):
    """The ASR model for this process, loaded on first use.
    `precision`: a dtype name ("float32", "bfloat16", "float16")."""
    with _LOADING:
        return _load(model, device, precision)


@functools.lru_cache(maxsize=2)
def _load(model: str, device: str, precision: str):
    return load_asr(model, device=device, dtype=DTYPES[precision])


def preload_asr(model: str, device: str, precision: str) -> threading.Thread:
    """Load the model in a background thread, so that the load overlaps other
    start-up work (the first shard then finds it loaded, or waits for it). A load
    that fails here is left for the shard to meet and report.

    The thread is not a daemon: a run with nothing left to transcribe (a resumed
    run) can end while the load is still inside torch, and an interpreter that
    exits under a running torch thread aborts ("terminate called without an
    active exception", exit -6). Python joins it before exiting instead."""

    def load() -> None:
        try:
            get_asr(model, device, precision)
        except Exception:  # noqa: BLE001 - the shard loads it again and fails its rows
            pass

    thread = threading.Thread(target=load, name="s2s-preload-asr", daemon=False)
    thread.start()
    return thread


def model_fingerprint(model: str) -> str:
    """Content hash of a checkpoint's files, without loading the model."""
    root = Path(resolve_checkpoint(model))
    files = (
        sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    )
    hashes = []
    for path in files:
        st = path.stat()
        hashes.append((path.name, file_sha256(str(path), st.st_size, st.st_mtime_ns)))
    return fingerprint(hashes)
