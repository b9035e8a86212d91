"""Train the G2P model bundled in ``s2s_models/speecht5/g2p/`` on CMUdict.

Training words: every plain word of the bundled CMUdict (all its pronunciations) except
the test sets of ``bench/g2p_heldout.txt`` and 1,000 development words (seed 7) that
choose the checkpoint. Teacher-forced cross-entropy with label smoothing 0.1, AdamW,
linear warm-up then cosine decay to zero at ``--max-steps``, batches of similar-length
words. Every ``--eval-every`` steps the development words are decoded greedily; the
checkpoint with the lowest development phoneme error rate (with stress) is kept in
``--out`` (``config.json`` + float16 ``model.safetensors``) and ``log.jsonl``.

    python bench/train_g2p.py --out runs/g2p --max-steps 8000
    cp runs/g2p/{config.json,model.safetensors} s2s_models/speecht5/g2p/

Single-threaded by default (``--threads``): on a shared 2-core machine one thread ran
each step faster than two.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_g2p import read_cmudict, read_split, score  # noqa: E402
from s2s_models.speecht5.g2p import (  # noqa: E402
    BOS,
    EOS,
    G2P,
    PAD,
    SPECIALS,
    G2PDims,
    G2PModel,
)
from s2s_models.speecht5.phonemes import PHONEMES  # noqa: E402

LETTERS = tuple("abcdefghijklmnopqrstuvwxyz'")


def examples(words, lexicon, dims: G2PDims) -> list[tuple[str, list[int]]]:
    index = {p: i for i, p in enumerate(SPECIALS + dims.phonemes)}
    out = []
    for w in words:
        for pron in lexicon[w]:
            if len(w) <= dims.max_letters and len(pron) < dims.max_phonemes:
                out.append((w, [index[p] for p in pron]))
    return out


def batches(data, batch_words: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by word length (similar lengths pad little), shuffled."""
    order = sorted(range(len(data)), key=lambda i: (len(data[i][0]), rng.random()))
    groups = [order[i : i + batch_words] for i in range(0, len(order), batch_words)]
    rng.shuffle(groups)
    return groups


def tensors(g2p: G2P, data, batch: list[int]) -> tuple[torch.Tensor, ...]:
    letters = g2p.encode_words([data[i][0] for i in batch])
    seqs = [[BOS, *data[i][1], EOS] for i in batch]
    n = max(map(len, seqs))
    target = torch.full((len(seqs), n), PAD, dtype=torch.long)
    for j, s in enumerate(seqs):
        target[j, : len(s)] = torch.tensor(s)
    return letters, target[:, :-1], target[:, 1:]


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.max_steps - args.warmup)
    return args.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def save(model: G2PModel, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "model.safetensors.tmp")
    (out / "model.safetensors.tmp").replace(out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(model.dims.to_dict(), indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--max-steps", type=int, default=8000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--batch-words", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--n-state", type=int, default=128)
    p.add_argument("--n-ffn", type=int, default=512)
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    lexicon = read_cmudict()
    held = {w for words in read_split().values() for w in words}
    pool = sorted(w for w in lexicon if w not in held)
    dev = sorted(random.Random(7).sample(pool, 1000))
    train_words = sorted(set(pool) - set(dev))
    dims = G2PDims(
        LETTERS,
        tuple(PHONEMES),
        n_state=args.n_state,
        n_head=4,
        n_ffn=args.n_ffn,
        n_encoder_layer=args.n_layer,
        n_decoder_layer=args.n_layer,
    )
    model = G2PModel(dims)
    g2p = G2P(model)
    data = examples(train_words, lexicon, dims)
    print(
        f"{len(train_words)} words, {len(data)} pronunciations, {len(dev)} dev; "
        f"{sum(p.numel() for p in model.parameters())} parameters",
        flush=True,
    )
    opt = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01
    )
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
    rng, step, best, t0 = random.Random(args.seed), 0, math.inf, time.time()
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("a")
    while step < args.max_steps:
        for batch in batches(data, args.batch_words, rng):
            model.train()
            letters, prefix, target = tensors(g2p, data, batch)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args)
            logits = model(letters, prefix)  # (batch, n_prefix, n_phoneme_ids)
            loss = loss_fn(logits.flatten(0, 1), target.flatten())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % args.eval_every == 0 or step == args.max_steps:
                model.eval()
                preds = g2p.predict(dev)
                s = score(preds, [lexicon[w] for w in dev], stress=True)
                s0 = score(preds, [lexicon[w] for w in dev], stress=False)
                rec = {
                    "step": step,
                    "loss": float(loss.detach()),
                    "dev_per": s["per"],
                    "dev_wer": s["wer"],
                    "dev_per_nostress": s0["per"],
                    "minutes": (time.time() - t0) / 60,
                }
                if s["per"] < best:
                    best = s["per"]
                    save(model, out)
                    rec["saved"] = True
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(rec, flush=True)
            if step >= args.max_steps:
                break


if __name__ == "__main__":
    main()
