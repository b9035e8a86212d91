"""How much round-trip WER the vocoder costs, and which Griffin-Lim settings cost least.

Reads finished `s2s synthesize` run folders and re-vocodes their mels:

* ``--teacher-run``: a teacher run (``--engine piper``): its own audio is the upper
  bound; its SpeechT5 mels through Griffin-Lim say what Griffin-Lim alone loses;
* ``--voice-run``: a run of one of our voices on the same texts: its mels through
  each Griffin-Lim variant.

Every audio is transcribed by the same Whisper judge (``--asr-model``) and scored
with the same normaliser as `s2s synthesize`. Example (the default voice's model
card)::

    s2s synthesize samples/tts/corpus/heldout.txt --engine piper --out runs/teacher
    s2s synthesize samples/tts/corpus/heldout.txt --voice default --out runs/voice
    python bench/bench_vocoder.py --teacher-run runs/teacher --voice-run runs/voice
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2s_models import TranscribeOptions  # noqa: E402
from s2s_models.vocoders.griffinlim import (  # noqa: E402
    GriffinLimOptions,
    griffin_lim,
    mel_to_magnitude,
    speecht5_log_mel,
)
from tasks.asr.models import get_asr  # noqa: E402
from tasks.codecs import decode_flac  # noqa: E402
from tasks.metrics import normalize_text, score_pair  # noqa: E402
from tasks.stage import StageSpec, read_stage  # noqa: E402
from tasks.tts.audio import AUDIO  # noqa: E402
from tasks.tts.mels import MELS, TTS_MEL  # noqa: E402

# name -> (magnitude exponent, Griffin-Lim options, NNLS iterations)
VARIANTS = {
    "gl32 (default)": (1.0, GriffinLimOptions(), 30),
    "gl100": (1.0, GriffinLimOptions(n_iter=100), 30),
    "gl32 power 1.2": (1.2, GriffinLimOptions(), 30),
    "gl32 power 1.5": (1.5, GriffinLimOptions(), 30),
    "gl32 nnls 200": (1.0, GriffinLimOptions(), 200),
}


def read_ok_rows(run: Path, stage: StageSpec, columns: list[str]) -> dict[str, dict]:
    """The ok rows of a run's stage, by text (log-mels as (n_frames, 80) arrays)."""
    table = read_stage(run, stage, columns)
    if table.num_rows == 0:
        raise SystemExit(f"{run}: no {stage.name} stage")
    rows = table.to_pylist()
    for row in rows:
        if "log_mel" in row:
            row["log_mel"] = TTS_MEL.read(row)
    return {r["text"]: r for r in rows if r["status"] == "ok"}


def vocode(mel: np.ndarray, power: float, options: GriffinLimOptions, nnls: int):
    """Griffin-Lim of ``mel`` with its linear magnitude raised to ``power`` (then
    rescaled to the same energy, so that only the contrast changes)."""
    magnitude = mel_to_magnitude(torch.from_numpy(mel), nnls)
    if power != 1.0:
        sharpened = magnitude**power
        magnitude = sharpened * (magnitude.norm() / sharpened.norm().clamp(min=1e-12))
    return griffin_lim(magnitude, options).numpy()


def corpus_wer(asr, texts: list[str], audios: list[np.ndarray]) -> float:
    hyps = [r.text for r in asr.transcribe(audios, TranscribeOptions(batch_size=8))]
    errors = words = 0
    for text, hyp in zip(texts, hyps, strict=True):
        ref = normalize_text(text, "whisper_english")
        s = score_pair(ref, normalize_text(hyp, "whisper_english"))
        errors += s["substitutions"] + s["deletions"] + s["insertions"]
        words += s["ref_words"]
    return 100.0 * errors / max(words, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher-run", type=Path)
    ap.add_argument("--voice-run", type=Path)
    ap.add_argument("--asr-model", default="base")
    ap.add_argument(
        "--variants",
        nargs="*",
        default=list(VARIANTS),
        help=f"Griffin-Lim variants (default: all of {list(VARIANTS)})",
    )
    ap.add_argument("--limit", type=int, default=None, help="first N texts only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    teacher = voice = None
    if args.teacher_run:
        teacher = read_ok_rows(args.teacher_run, AUDIO, ["text", "audio", "status"])
    if args.voice_run:
        voice = read_ok_rows(args.voice_run, MELS, ["text", *TTS_MEL.columns, "status"])
    if teacher is None and voice is None:
        ap.error("give --teacher-run and/or --voice-run")
    texts = sorted(set(teacher or voice) & set(voice or teacher))[: args.limit]
    print(f"{len(texts)} texts, judge {args.asr_model}", flush=True)
    asr = get_asr(args.asr_model, "cpu")
    results = []

    def record(source: str, vocoder: str, audios: list[np.ndarray], t0: float):
        wer = corpus_wer(asr, texts, audios)
        results.append(
            {
                "source": source,
                "vocoder": vocoder,
                "wer": round(wer, 2),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"| {source} | {vocoder} | {wer:.2f} |", flush=True)

    sources = {}
    if teacher is not None:
        t0 = time.perf_counter()
        audio = [decode_flac(teacher[t]["audio"]["bytes"])[0] for t in texts]
        record("teacher", "its own audio", audio, t0)
        sources["teacher"] = [speecht5_log_mel(a).numpy() for a in audio]
    if voice is not None:
        sources["voice"] = [voice[t]["log_mel"] for t in texts]
    for source, mels in sources.items():
        for name in args.variants:
            t0 = time.perf_counter()
            record(source, name, [vocode(m, *VARIANTS[name]) for m in mels], t0)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
