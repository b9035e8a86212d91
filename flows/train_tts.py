"""Flow `train-tts`: teach our SpeechT5-architecture model a voice from a TTS dataset.

CLI: `s2s train-tts DATASET --out CKPT_DIR`. DATASET is the RUN_DIR of an
`s2s synthesize` run (text + audio, normally a teacher engine's, at the rate of the
voice's mel definition: `--mel hifigan-22k` needs a dataset made with it). The flow
alternates training segments and held-out evaluations, each a Prefect task:

    prepare-training-data -> (train-segment -> evaluate-checkpoint) x N

Every segment ends with a complete checkpoint in CKPT_DIR/latest (the best WER so far
is read back from CKPT_DIR/best), so a killed run
continues where it stopped when the same command is run again. Every evaluation
synthesizes held-out sentences, vocodes them (Griffin-Lim for a ``speecht5-16k``
voice, the pretrained universal HiFi-GAN for a ``hifigan-22k`` one) and transcribes
them with our Whisper; the WER curve goes to CKPT_DIR/eval.jsonl, CKPT_DIR/wer_curve.png
and a Prefect artifact, and the voice with the lowest WER is kept in CKPT_DIR/best.
"""

# Without `from __future__ import annotations`: Prefect validates the parameters
# against these annotations, and a served flow's function travels to its run's
# process pickled by value, with only the globals its body uses: string
# annotations naming the option dataclasses could not be resolved there.

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from tasks.stage import RunLock
from tasks.stage.shutdown import stop_on_signals
from tasks.tts.training.curves import plot_curves, read_jsonl
from tasks.tts.training.data import load_training_set
from tasks.tts.training.evaluation import evaluate_voice
from tasks.tts.training.trainer import TrainConfig, Trainer

DEFAULT_HELDOUT = (
    Path(__file__).resolve().parent.parent / "samples/tts/corpus/heldout.txt"
)


def read_heldout(path: str | Path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"{path}: no held-out sentences")
    return texts


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_cooldown(trainer: Trainer, n_steps: int) -> int:
    """Begin (or keep) a cool-down on ``trainer``; returns the step it ends at."""
    config = trainer.config
    if config.cooldown_start is None:
        config = replace(
            config, cooldown_start=trainer.state.step, cooldown_steps=n_steps
        )
        trainer.config = config
        trainer.save("latest")  # a killed cool-down resumes with the same schedule
    end = config.cooldown_start + config.cooldown_steps
    _say(f"cool-down: learning rate to zero from step {config.cooldown_start} to {end}")
    return end


@task(name="prepare-training-data", cache_policy=NONE)
def prepare_training_data(trainer: Trainer, dataset: str, heldout: list[str]):
    t0 = time.perf_counter()
    data, counts = load_training_set(
        dataset,
        trainer.tokenizer,
        heldout,
        trainer.dir,
        trainer.config.max_seconds,
        trainer.mel,
    )
    _say(
        f"training data: {len(data)} utterances, {data.seconds / 3600:.2f} h of "
        f"audio ({counts}; {time.perf_counter() - t0:.0f} s)"
    )
    return data, counts


@task(name="train-segment", cache_policy=NONE)
def train_segment(trainer: Trainer, data, n_steps: int, deadline: float | None) -> dict:
    def progress(r: dict) -> None:
        _say(
            f"step {r['step']:>6} | loss {r['loss']:.3f} (l1 {r['l1_before']:.3f}/"
            f"{r['l1_after']:.3f} stop {r['stop_bce']:.3f} attn "
            f"{r['guided_attention']:.4f}) | {r['steps_per_s']:.2f} steps/s"
        )

    records = trainer.train_steps(data, n_steps, deadline, progress=progress)
    trainer.save("latest")
    return records[-1] if records else {}


@task(name="evaluate-checkpoint", cache_policy=NONE)
def evaluate_checkpoint(
    trainer: Trainer, heldout: list[str], asr_models: tuple[str, ...], device: str
) -> dict:
    result = evaluate_voice(
        trainer.model, trainer.tokenizer, heldout, asr_models, device, trainer.mel
    )
    first = asr_models[0]
    record = {
        "step": trainer.state.step,
        "train_minutes": round(trainer.state.train_seconds / 60, 2),
        "n": result["n"],
        "stop_failures": result["stop_failures"],
        "synth_rtfx": round(result["synth_rtfx"], 2),
        **{f"{m}_wer": result[m]["wer"] for m in asr_models},
        **{f"{m}_cer": result[m]["cer"] for m in asr_models},
    }
    state = trainer.state
    wer = result[first]["wer"]
    if state.best_wer is None or wer < state.best_wer:
        state.best_wer, state.best_step = wer, state.step
        trainer.save("best", with_optimizer=False)
    # Recorded after `best` is saved: a run killed in between evaluates this
    # checkpoint again when it resumes (see `_pending_evaluation`).
    (trainer.dir / "eval_latest_items.json").write_text(
        json.dumps(result[f"{first}_items"], indent=1)
    )
    with (trainer.dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    _say(
        f"eval at step {state.step}: {first} WER {wer:.1%} CER "
        f"{result[first]['cer']:.1%}, stop failures {result['stop_failures']:.0%} "
        f"(best {state.best_wer:.1%} at step {state.best_step})"
    )
    return record


def _pending_evaluation(trainer: Trainer) -> bool:
    """Whether `latest` holds a checkpoint that was never evaluated: every segment
    ends with a save and an evaluation, and a run killed between the two resumes
    at a step with no line in eval.jsonl."""
    if trainer.state.step == 0:
        return False
    evals = read_jsonl(trainer.dir / "eval.jsonl")
    return trainer.state.step not in {e["step"] for e in evals}


def _publish(ckpt_dir: Path, first_asr: str) -> None:
    rows = read_jsonl(ckpt_dir / "eval.jsonl")
    plot_curves(ckpt_dir, first_asr)
    create_table_artifact(
        key="tts-training-wer",
        table=rows,
        description=f"Held-out round-trip WER by training step ({ckpt_dir})",
    )
    last = rows[-1]
    create_markdown_artifact(
        key="tts-training-summary",
        markdown=(
            f"# TTS training: {ckpt_dir.name}\n\nstep {last['step']}, "
            f"{last['train_minutes']} training minutes; held-out {first_asr} WER "
            f"{last[f'{first_asr}_wer']:.1%}, stop failures "
            f"{last['stop_failures']:.0%}.\n\nCurve: `{ckpt_dir / 'wer_curve.png'}`\n"
        ),
    )


@flow(name="train-tts", log_prints=False)
def train_tts(
    dataset: str,
    ckpt_dir: str,
    heldout_file: str = str(DEFAULT_HELDOUT),
    max_steps: int = 20_000,
    max_minutes: float | None = None,
    eval_every: int = 1000,
    eval_sentences: int = 20,
    asr_models: tuple[str, ...] = ("tiny.en",),
    device: str = "auto",
    config: TrainConfig = TrainConfig(),
    cooldown_steps: int | None = None,
) -> dict:
    """Train (or resume) the voice in ``ckpt_dir``; returns the last evaluation and
    where the checkpoints are. ``config`` is the configuration of a new run (a
    resumed run keeps the configuration it started with). ``cooldown_steps``
    starts a linear decay of the learning rate to zero from the current step and
    ends training there; rerunning with it resumes the same cool-down."""
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    heldout = read_heldout(heldout_file)
    out = Path(ckpt_dir)
    out.mkdir(parents=True, exist_ok=True)
    with stop_on_signals(), RunLock(str(out)):
        trainer = Trainer(out, config, device)
        _say(
            f"{out}: step {trainer.state.step}, {trainer.n_parameters / 1e6:.1f} M "
            f"parameters on {trainer.device}, config {asdict(trainer.config)}"
        )
        if trainer.warm_started:
            _say(f"warm start: {trainer.warm_started}")
        if cooldown_steps:
            max_steps = start_cooldown(trainer, cooldown_steps)
        data, counts = prepare_training_data(trainer, dataset, heldout)
        eval_texts = heldout[:eval_sentences]
        record = {}
        if _pending_evaluation(trainer):
            record = evaluate_checkpoint(trainer, eval_texts, tuple(asr_models), device)
            _publish(out, asr_models[0])
        while trainer.state.step < max_steps:
            if deadline is not None and time.monotonic() > deadline:
                break
            to_boundary = eval_every - trainer.state.step % eval_every
            n = min(to_boundary, max_steps - trainer.state.step)
            train_segment(trainer, data, n, deadline)
            record = evaluate_checkpoint(trainer, eval_texts, tuple(asr_models), device)
            _publish(out, asr_models[0])
    return {
        "ckpt_dir": str(out),
        "step": trainer.state.step,
        "best_step": trainer.state.best_step,
        "best_wer": trainer.state.best_wer,
        "last_eval": record,
        "data": counts,
        "voice": str(out / "best"),
    }
