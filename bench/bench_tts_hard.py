"""The hard sentence set (``samples/tts/hard/hard_sentences.jsonl``) as a benchmark.

Two measurements:

* **normaliser**: ``normalize_english`` against each sentence's expected spoken form
  (compared in lower case, words only): sentences exactly right, and word error rate;
* **round trip**: for each ``s2s synthesize`` run folder given (any engine, run on
  the hard set), the corpus WER of its ASR transcripts against the written text,
  scored again here with the current round-trip normaliser (so runs made before a
  normaliser change compare fairly), overall, on the held-out part, and without the
  sentences whose kinds include ``names`` (the ASR judge misspells foreign names
  whoever speaks them); plus stop failures and implausible durations.

    python bench/bench_tts_hard.py --runs runs/hard_piper runs/hard_voice
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2s_models.speecht5.normalize import normalize_english  # noqa: E402
from tasks.metrics import normalize_text, score_pair  # noqa: E402
from tasks.stage import read_stage  # noqa: E402
from tasks.tts.evaluation import TTS_EVALUATION  # noqa: E402
from tasks.tts.mels import MELS  # noqa: E402

HARD_SET = ROOT / "samples" / "tts" / "hard" / "hard_sentences.jsonl"


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split())


def read_set(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def normaliser_accuracy(rows: list[dict]) -> dict:
    exact, errors, total = 0, 0, 0
    for r in rows:
        got, want = words(normalize_english(r["text"])), words(r["spoken"])
        exact += got == want
        s = score_pair(want, got)
        errors += s["substitutions"] + s["deletions"] + s["insertions"]
        total += s["ref_words"]
    return {"n": len(rows), "exact": exact, "wer": errors / total}


def round_trip(run: str, by_id: dict[str, dict]) -> dict:
    ev = read_stage(run, TTS_EVALUATION).to_pandas()
    mels = read_stage(run, MELS, ["utt_id", "hit_max_length", "cut_short"])
    mels = mels.to_pandas()
    ev = ev[ev["status"] == "ok"]
    groups = {"all": [], "heldout": [], "without names": []}
    for _, r in ev.iterrows():
        item = by_id.get(r["utt_id"])
        if item is None:
            continue
        ref = normalize_text(r["text"], "whisper_english")
        hyp = normalize_text(r["hypothesis"] or "", "whisper_english")
        s = score_pair(ref, hyp)
        pair = (s["substitutions"] + s["deletions"] + s["insertions"], s["ref_words"])
        groups["all"].append(pair)
        if item["split"] == "heldout":
            groups["heldout"].append(pair)
        if "names" not in item["kinds"]:
            groups["without names"].append(pair)
    out = {"run": run, "n": len(groups["all"])}
    for name, pairs in groups.items():
        out[f"wer {name}"] = sum(e for e, _ in pairs) / max(1, sum(n for _, n in pairs))
    stop = mels["hit_max_length"].fillna(False) | mels["cut_short"].fillna(False)
    out["stop failures"] = int(stop.sum())
    out["duration flags"] = int(ev["duration_flag"].notna().sum())
    out["s per phoneme p50"] = float(ev["seconds_per_phoneme"].median())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="*", default=[])
    p.add_argument("--set", default=str(HARD_SET), help="JSONL with text and spoken")
    args = p.parse_args()
    rows = read_set(Path(args.set))
    acc = normaliser_accuracy(rows)
    print(
        f"normaliser: {acc['exact']}/{acc['n']} sentences exact, "
        f"word error rate {acc['wer']:.1%}"
    )
    by_id = {r["utt_id"]: r for r in rows}
    for run in args.runs:
        r = round_trip(run, by_id)
        print(
            " | ".join(
                f"{k} {v:.1%}" if isinstance(v, float) and "wer" in k else f"{k} {v}"
                for k, v in r.items()
            )
        )


if __name__ == "__main__":
    main()
