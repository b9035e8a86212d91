"""Plots of a TTS training run: CKPT_DIR/wer_curve.png from eval.jsonl and log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(ckpt_dir: str | Path, asr_model: str = "tiny.en") -> Path:
    """Held-out WER/CER and training losses against step, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ckpt_dir = Path(ckpt_dir)
    evals = read_jsonl(ckpt_dir / "eval.jsonl")
    logs = read_jsonl(ckpt_dir / "log.jsonl")
    fig, (ax_wer, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    if evals:
        steps = [e["step"] for e in evals]
        for metric in ("wer", "cer"):
            key = f"{asr_model}_{metric}"
            ax_wer.plot(
                steps,
                [100 * e[key] for e in evals],
                marker="o",
                label=f"{metric.upper()} ({asr_model})",
            )
        ax_wer.plot(
            steps,
            [100 * e["stop_failures"] for e in evals],
            marker="x",
            linestyle=":",
            label="stop failures",
        )
    ax_wer.set_xlabel("step")
    ax_wer.set_ylabel("%")
    ax_wer.set_title("held-out round trip (Griffin-Lim)")
    ax_wer.grid(alpha=0.3)
    ax_wer.legend()
    if logs:
        steps = [r["step"] for r in logs]
        for key in ("l1_before", "l1_after", "stop_bce", "guided_attention"):
            ax_loss.plot(steps, [r[key] for r in logs], label=key)
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training losses")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    fig.tight_layout()
    out = ckpt_dir / "wer_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
