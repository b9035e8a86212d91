"""How the cost of our transcription grows: batch size, recording length, features.

Four measurements, in one process, on the dev corpus (and recordings built from it):

1. **Batch size**: the dev files transcribed at each ``--batch-sizes`` value (30 s
   windows decoded together, across files): RTFx and WER.
2. **Decoder steps**: ``decode()`` of one 30 s window per dev file with the eager
   (growing) KV cache, the fixed-shape static cache and, on CUDA, CUDA graphs.
3. **Recording length**: the same audio as ``--long-files`` recordings of
   ``--long-s`` seconds (dev files joined with short silences), and the same
   recordings cut into fixed 30 s chunks transcribed as separate files. WER of the
   chunks is that of their transcripts joined in order (words cut at a chunk edge
   count as errors: that is the cost of fixed chunking).
4. **Features alone**: seconds to compute the log-mel of one hour of audio, both the
   blockwise whole-recording path (features stage) and the 30 s windows the ASR
   computes, on the chosen device.

Usage::

    python bench/bench_scaling.py --audio-dir ../shared/data/dev \\
        [--model tiny.en|base] [--device cpu|cuda] [--batch-sizes 1 4 8 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_asr import (  # noqa: E402  (the sibling benchmark's corpora and scoring)
    N_THREADS,
    SAMPLE_RATE,
    Corpus,
    corpus_wer,
    load_dev_corpus,
    make_long_corpus,
)


def timed(fn, repeat: int):
    """Best wall time of ``repeat`` calls after a warm-up call, and the last result."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def cut(corpus: Corpus, seconds: float) -> list[list[np.ndarray]]:
    """Each recording of ``corpus`` as consecutive pieces of ``seconds``."""
    step = int(seconds * SAMPLE_RATE)
    return [[a[i : i + step] for i in range(0, len(a), step)] for a in corpus.audios]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-dir", type=Path, required=True)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--precision", default="auto", help="auto|float32|bfloat16|float16"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--long-s", type=float, default=600.0)
    parser.add_argument("--long-files", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    from s2s_models import TranscribeOptions, load_asr
    from s2s_models.audio import log_mel_spectrogram_blockwise
    from s2s_models.whisper.checkpoints import DTYPES, resolve_precision
    from s2s_models.whisper.longform import window_mels

    torch.set_num_threads(N_THREADS)
    precision = resolve_precision(args.device, args.precision)
    asr = load_asr(args.model, device=args.device, dtype=DTYPES[precision])
    sizes = args.batch_sizes or (
        [16, 64, 128, 256] if args.device == "cuda" else [1, 4, 8, 16]
    )
    dev = load_dev_corpus(args.audio_dir)
    print(
        f"{args.model} on {args.device} ({precision}), {N_THREADS} threads; dev "
        f"{len(dev.audios)} files {dev.seconds:.1f} s",
        flush=True,
    )

    def transcribe(audios, batch_size: int) -> list[str]:
        options = TranscribeOptions(language="en", batch_size=batch_size)
        return [t.text for t in asr.transcribe(audios, options)]

    print("\n### Throughput against batch size (dev files)\n")
    print("| batch | wall s | RTFx | WER % |\n|---|---|---|---|")
    for size in sizes:
        wall, texts = timed(lambda s=size: transcribe(dev.audios, s), args.repeat)
        wer = corpus_wer(dev.references, texts)
        print(
            f"| {size} | {wall:.2f} | {dev.seconds / wall:.1f} | {100 * wer:.2f} |",
            flush=True,
        )

    print("\n### Decoder steps: growing KV cache against fixed shapes (dev windows)\n")
    from s2s_models.whisper.decoding import DecodingOptions, decode

    batch_mel = window_mels(asr.model, dev.audios)  # one 30 s window per dev file
    steps = ["eager", "static"] + (["graphs"] if args.device == "cuda" else [])
    print("| decode_steps | wall s | windows/s | same tokens as eager |")
    print("|---|---|---|---|")
    tokens = {}
    for mode in steps:
        options = DecodingOptions(without_timestamps=False, decode_steps=mode)

        def run(o=options):
            with torch.inference_mode():
                return decode(asr.model, asr.tokenizer, batch_mel, o)

        wall, results = timed(run, max(args.repeat, 3))
        tokens[mode] = [r.tokens for r in results]
        same = sum(a == b for a, b in zip(tokens["eager"], tokens[mode], strict=True))
        print(
            f"| {mode} | {wall:.2f} | {len(results) / wall:.1f} | "
            f"{same} of {len(results)} |",
            flush=True,
        )

    long = make_long_corpus(dev, args.long_s, args.long_files, seed=0)
    batch = 0  # the default: auto
    print(
        f"\n### Recording length: {args.long_files} x "
        f"{long.seconds / args.long_files:.0f} s recordings against the same audio "
        "in 30 s chunks (batch auto)\n"
    )
    print("| input | files | wall s | RTFx | WER % |\n|---|---|---|---|---|")
    wall, texts = timed(lambda: transcribe(long.audios, batch), args.repeat)
    wer = corpus_wer(long.references, texts)
    print(
        f"| whole recordings | {len(long.audios)} | {wall:.2f} | "
        f"{long.seconds / wall:.1f} | {100 * wer:.2f} |",
        flush=True,
    )
    pieces = cut(long, 30.0)
    flat = [p for ps in pieces for p in ps]
    wall, texts = timed(lambda: transcribe(flat, batch), args.repeat)
    joined, i = [], 0
    for ps in pieces:
        joined.append(" ".join(texts[i : i + len(ps)]))
        i += len(ps)
    wer = corpus_wer(long.references, joined)
    print(
        f"| 30 s chunks | {len(flat)} | {wall:.2f} | {long.seconds / wall:.1f} | "
        f"{100 * wer:.2f} |",
        flush=True,
    )

    hour = np.tile(
        long.audios[0], int(np.ceil(3600 * SAMPLE_RATE / len(long.audios[0])))
    )
    hour = np.ascontiguousarray(hour[: 3600 * SAMPLE_RATE])
    windows = [
        hour[i : i + 30 * SAMPLE_RATE] for i in range(0, len(hour), 30 * SAMPLE_RATE)
    ]
    print("\n### Log-mel of one hour of audio\n")
    print("| path | wall s | x real time |\n|---|---|---|")
    with torch.inference_mode():
        wall, _ = timed(
            lambda: log_mel_spectrogram_blockwise(hour, device=args.device), args.repeat
        )
        print(
            f"| features stage (blockwise, whole file) | {wall:.2f} | "
            f"{3600 / wall:.0f} |"
        )

        def asr_windows():
            for first in range(0, len(windows), 64):
                window_mels(asr.model, windows[first : first + 64])

        wall, _ = timed(asr_windows, args.repeat)
        print(
            f"| ASR windows (120 x 30 s, batches of 64) | {wall:.2f} | "
            f"{3600 / wall:.0f} |"
        )


if __name__ == "__main__":
    main()
