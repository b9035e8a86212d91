"""Peak memory of a transcription run against corpus size (issue: bounded memory).

Builds corpora of N short real-speech files (copies of one bundled 1.5 s LJSpeech
clip, each with a different gain so their content hashes differ), runs
`s2s transcribe` on each in a fresh process, samples the RSS of the flow process
every 50 ms, and prints the peak. Memory must not grow with N: shards stream.

    python bench/bench_memory.py --sizes 100 5000 [--keep DIR]

Also `--long-minutes 60` transcribes one long file (the bundled 56 s long-form
fixture looped to the length asked) to show memory bounded by the chunking.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "speech" / "LJ002-0020.wav"
LONG = REPO / "tests" / "fixtures" / "longform" / "speech_60s.flac"


def make_corpus(folder: Path, n: int) -> float:
    audio, rate = sf.read(CLIP, dtype="float32")
    folder.mkdir(parents=True)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"clip{i:06d}.flac", audio * (0.5 + 0.5 * i / n), rate)
    return n * len(audio) / rate


def make_long(folder: Path, minutes: float) -> float:
    audio, rate = sf.read(LONG, dtype="float32")
    reps = int(np.ceil(minutes * 60 * rate / len(audio)))
    long = np.tile(audio, reps)[: int(minutes * 60 * rate)]
    folder.mkdir(parents=True)
    sf.write(folder / "long.flac", long, rate)
    return len(long) / rate


def run_and_sample(corpus: Path, run_dir: Path, home: Path) -> dict:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    }
    env.pop("PREFECT_API_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "transcribe",
        str(corpus),
        "--out",
        str(run_dir),
        "--json",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    ps, peak, peak_tree = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:  # the flow process, and it plus its Prefect server and other children
            rss = ps.memory_info().rss
            tree = rss
            for child in ps.children(recursive=True):
                try:
                    tree += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak, peak_tree = max(peak, rss), max(peak_tree, tree)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out = proc.stdout.read().decode()
    summary = json.loads(out) if proc.returncode == 0 else {}
    return {
        "returncode": proc.returncode,
        "peak_rss_mb": peak / 2**20,
        "peak_tree_rss_mb": peak_tree / 2**20,
        "wall_s": time.perf_counter() - started,
        "n_ok": summary.get("n_ok"),
        "n_failed": summary.get("n_failed"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 5000])
    parser.add_argument("--long-minutes", type=float, default=0.0)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="s2s-bench-memory-"))
    rows = []
    for n in args.sizes:
        audio_s = make_corpus(root / f"corpus{n}", n)
        res = run_and_sample(root / f"corpus{n}", root / f"run{n}", root / "home")
        rows.append({"case": f"{n} files", "audio_s": round(audio_s, 1), **res})
        print(json.dumps(rows[-1]), flush=True)
    if args.long_minutes:
        audio_s = make_long(root / "long", args.long_minutes)
        res = run_and_sample(root / "long", root / "runlong", root / "home")
        rows.append(
            {
                "case": f"one {args.long_minutes:g}-min file",
                "audio_s": round(audio_s, 1),
                **res,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(
        "| case | audio s | peak RSS MB (flow) | peak RSS MB (with server) | wall s "
        "| ok | failed |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['audio_s']} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_tree_rss_mb']:.0f} | "
            f"{r['wall_s']:.0f} | {r['n_ok']} | {r['n_failed']} |"
        )


if __name__ == "__main__":
    main()
