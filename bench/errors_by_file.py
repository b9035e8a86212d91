"""Substitutions, deletions and insertions per recording, from a ``bench_asr.py --json``
file of the ``material`` corpus (bench/RESULTS.md run 5 was read this way).

    python bench/errors_by_file.py lm.json bench/out/material_lm
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="bench_asr.py --json output")
    parser.add_argument("material", type=Path, help="folder with its manifest.csv")
    args = parser.parse_args()
    normalise = EnglishTextNormalizer()
    texts = json.loads(args.results.read_text())["texts"]["material"]
    with open(args.material / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    refs = [normalise(r["reference"]) for r in rows]
    for system, hyps in texts.items():
        hyps = [normalise(h) for h in hyps]
        out = jiwer.process_words(refs, hyps)
        print(
            f"{system:28s} WER {100 * out.wer:.2f}  S {out.substitutions} "
            f"D {out.deletions} I {out.insertions}"
        )
        for row, ref, hyp in zip(rows, refs, hyps, strict=True):
            one = jiwer.process_words(ref, hyp)
            print(
                f"   {row['audio_path']:24s} {100 * one.wer:6.2f}  "
                f"S {one.substitutions} D {one.deletions} I {one.insertions}"
            )


if __name__ == "__main__":
    main()
