"""Word timestamps against faster-whisper's, on the same audio and weights.

Both systems transcribe each recording with word timestamps (ours: the command
line's defaults, VAD long-form mode; faster-whisper: its sequential mode, greedy,
``word_timestamps=True``). Words of the two transcripts are paired where their
normalised spellings agree (difflib's longest matching blocks), and the start and
end times of each pair are compared. Prints, per recording and over all of them, the
pairs, the median and 90th percentile of the absolute start and end differences and
the share of starts within 0.1 s and 0.2 s.

Usage::

    python bench/bench_word_timestamps.py --audio-dir ../shared/data/dev \\
        [--material bench/out/material --kinds long,narration_clean] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_asr import SETTINGS, ct2_model_dir, read_audio  # noqa: E402  (its loaders)

N_THREADS = 2


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def ours(audios: list[np.ndarray]) -> list[list[tuple[str, float, float]]]:
    from s2s_models import TranscribeOptions, load_asr
    from s2s_models.whisper.checkpoints import DTYPES, resolve_precision

    dtype = DTYPES[resolve_precision("cpu")]
    asr = load_asr(SETTINGS["model"], device="cpu", dtype=dtype)
    options = TranscribeOptions(language="en", batch_size=0, word_timestamps=True)
    return [
        [(w.word, w.start_s, w.end_s) for w in result.words]
        for result in asr.transcribe(audios, options)
    ]


def faster_whisper(audios: list[np.ndarray]) -> list[list[tuple[str, float, float]]]:
    from faster_whisper import WhisperModel

    model = WhisperModel(
        ct2_model_dir(), device="cpu", compute_type="float32", cpu_threads=N_THREADS
    )
    out = []
    for audio in audios:
        segments, _ = model.transcribe(
            audio, language="en", beam_size=1, word_timestamps=True
        )
        out.append([(w.word, w.start, w.end) for s in segments for w in s.words])
    return out


def pair(a: list, b: list) -> list[tuple[tuple, tuple]]:
    """Words of `a` and `b` whose normalised spellings match, in order."""
    na, nb = [_norm(w[0]) for w in a], [_norm(w[0]) for w in b]
    matcher = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    pairs = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            if na[block.a + k]:
                pairs.append((a[block.a + k], b[block.b + k]))
    return pairs


def stats(pairs: list) -> dict:
    if not pairs:
        return {"pairs": 0}
    start = np.array([abs(x[1] - y[1]) for x, y in pairs])
    end = np.array([abs(x[2] - y[2]) for x, y in pairs])
    return {
        "pairs": len(pairs),
        "start_median_s": float(np.median(start)),
        "start_p90_s": float(np.percentile(start, 90)),
        "end_median_s": float(np.median(end)),
        "end_p90_s": float(np.percentile(end, 90)),
        "start_within_0.1s": float(np.mean(start <= 0.1)),
        "start_within_0.2s": float(np.mean(start <= 0.2)),
    }


def load(folder: Path, kinds: set[str] | None) -> tuple[list[str], list[np.ndarray]]:
    with open(folder / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if kinds:
        rows = [r for r in rows if r.get("kind") in kinds]
    return [r["audio_path"] for r in rows], [
        read_audio(folder / r["audio_path"]) for r in rows
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-dir", type=Path, required=True)
    parser.add_argument("--material", type=Path, help="also these recordings")
    parser.add_argument("--kinds", help="material kinds to use (comma list)")
    parser.add_argument("--model", default="tiny.en", choices=("tiny.en", "base"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    SETTINGS.update(model=args.model, device="cpu")
    torch.set_num_threads(N_THREADS)

    names, audios = load(args.audio_dir, None)
    if args.material:
        kinds = set(args.kinds.split(",")) if args.kinds else None
        more_names, more = load(args.material, kinds)
        names, audios = names + more_names, audios + more
    a, b = ours(audios), faster_whisper(audios)
    per_file = {}
    every = []
    for name, x, y in zip(names, a, b, strict=True):
        pairs = pair(x, y)
        every += pairs
        per_file[name] = {**stats(pairs), "ours": len(x), "faster_whisper": len(y)}
        s = per_file[name]
        if s["pairs"]:
            print(
                f"{name:45s} words {len(x):4d}/{len(y):4d} pairs {s['pairs']:4d}  "
                f"start median {s['start_median_s']:.3f} s  "
                f"within 0.2 s {100 * s['start_within_0.2s']:.0f}%"
            )
    total = stats(every)
    print("ALL", json.dumps(total, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"all": total, "files": per_file}, indent=1))


if __name__ == "__main__":
    main()
