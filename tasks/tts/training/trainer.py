"""Training loop and checkpoints of our SpeechT5-architecture voices (the held-out
evaluation is ``tasks.tts.training.evaluation``).

A training run lives in CKPT_DIR:

* ``training_data.parquet``: the cached ids + mels (see ``tasks.tts.training.data``);
* ``latest/``: the newest checkpoint, a complete voice folder (``config.json``,
  ``model.safetensors``, ``phonemes.json``) plus ``optimizer.pt`` (tensors only, loaded
  with ``weights_only``) and ``trainer.json`` (step, epoch, position, config);
* ``best/``: the voice with the lowest held-out WER so far (no optimizer state);
* ``log.jsonl`` (losses), ``eval.jsonl`` (held-out WER/CER per evaluation) and
  ``wer_curve.png``.

Checkpoints are written to a temporary folder and renamed into place, so a run killed at
any moment resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from s2s_models.device import resolve_device
from s2s_models.speecht5 import SpeechT5Dims, SpeechT5TTS, save_speecht5
from s2s_models.speecht5.checkpoints import load_speecht5
from s2s_models.speecht5.phonemes import PhonemeTokenizer
from s2s_models.speecht5.training import LossWeights, collate, tts_losses, warm_start
from s2s_models.vocoders.mels import MelDefinition, get_mel_definition
from tasks.tts.audio import native_bf16
from tasks.tts.training.data import TrainingSet, length_buckets

TRAINER_FILE = "trainer.json"
OPTIMIZER_FILE = "optimizer.pt"


@dataclass(frozen=True)
class TrainConfig:
    # model
    n_state: int = 256
    n_head: int = 4
    n_ffn: int = 1024
    n_text_layer: int = 4
    n_speech_layer: int = 4
    reduction_factor: int = 3
    n_postnet_units: int = 256
    # phonemes (en-arpabet-v2), phonemes-v1 or characters: s2s_models.speecht5.phonemes
    front_end: str = "phonemes"
    # what the voice predicts (s2s_models.vocoders.mels): speecht5-16k (Griffin-Lim or
    # a SpeechT5 HiFi-GAN) or hifigan-22k (the pretrained universal HiFi-GAN)
    mel: str = "speecht5-16k"
    # warm start: a voice folder ("default": the bundled voice) whose tensors of
    # matching shape start the new model (its mel units are rescaled: warm_start)
    init_from: str | None = None
    # optimisation
    frames_per_batch: int = 6000  # padded mel frames per batch (length-bucketed)
    max_batch: int = 64
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    bf16: bool = True  # bfloat16 autocast (CPU with AVX512-BF16/AMX, or CUDA; else off)
    seed: int = 0
    max_seconds: float = 12.0  # longer training utterances are skipped
    # loss
    stop_pos_weight: float = 5.0
    guided_attention: float = 10.0
    guided_heads: int = 2
    # schedule: optional linear cool-down to zero, started on a running voice
    cooldown_start: int | None = None  # step where the cool-down began
    cooldown_steps: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def dims(self, n_vocab: int) -> SpeechT5Dims:
        return SpeechT5Dims(
            n_vocab=n_vocab,
            n_state=self.n_state,
            n_text_layer=self.n_text_layer,
            n_text_head=self.n_head,
            n_text_ffn=self.n_ffn,
            n_speech_layer=self.n_speech_layer,
            n_speech_head=self.n_head,
            n_speech_ffn=self.n_ffn,
            reduction_factor=self.reduction_factor,
            n_postnet_units=self.n_postnet_units,
            max_text_positions=600,
            max_speech_positions=1500,
            max_relative_position=64,
            activation="relu",
        )

    def loss_weights(self) -> LossWeights:
        return LossWeights(
            stop_pos_weight=self.stop_pos_weight,
            guided_attention=self.guided_attention,
            guided_heads=self.guided_heads,
        )


@dataclass
class TrainerState:
    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch already done
    best_wer: float | None = None
    best_step: int | None = None
    train_seconds: float = 0.0


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then inverse square-root decay; with a cool-down,
    linear from the rate at ``cooldown_start`` to zero ``cooldown_steps`` later."""
    warm = max(config.warmup_steps, 1)

    def base(s: int) -> float:
        return config.lr * min((s + 1) / warm, math.sqrt(warm / (s + 1)))

    start = config.cooldown_start
    if start is None or step < start or config.cooldown_steps <= 0:
        return base(step)
    left = 1.0 - (step - start) / config.cooldown_steps
    return base(start) * max(left, 0.0)


def _complete(folder: Path) -> bool:
    """Whether a checkpoint folder was written to its end: `save` writes the
    trainer state last."""
    try:
        json.loads((folder / TRAINER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return True


def recover_checkpoints(ckpt_dir: Path) -> None:
    """Finish or undo the `Trainer.save` that a kill interrupted.

    A save writes `.NAME.tmp-PID`, renames NAME to `.NAME.old-PID`, renames the
    temporary folder to NAME and deletes the old one. Killed between the two
    renames, NAME is missing: the newest complete temporary folder becomes NAME
    (else the old checkpoint goes back). Every other leftover is deleted.
    """
    for name in ("latest", "best"):
        final = ckpt_dir / name
        leftovers = [*ckpt_dir.glob(f".{name}.tmp-*"), *ckpt_dir.glob(f".{name}.old-*")]
        if not final.exists():
            newest_first = sorted(
                leftovers,
                key=lambda p: (".tmp-" in p.name, p.stat().st_mtime_ns),
                reverse=True,
            )
            for candidate in newest_first:
                if _complete(candidate):
                    candidate.rename(final)
                    leftovers.remove(candidate)
                    break
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)


class Trainer:
    """Owns the model, optimizer and state of one CKPT_DIR."""

    def __init__(self, ckpt_dir: str | Path, config: TrainConfig, device: str = "auto"):
        self.dir = Path(ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(device)
        self.tokenizer = PhonemeTokenizer.for_front_end(config.front_end)
        recover_checkpoints(self.dir)
        latest = self.dir / "latest"
        self.warm_started: dict | None = None  # what --init-from copied (new runs)
        if (latest / TRAINER_FILE).exists():
            saved = json.loads((latest / TRAINER_FILE).read_text())
            config = TrainConfig.from_dict(saved["config"])
            self.tokenizer = PhonemeTokenizer.from_pretrained(latest)
            self.model = load_speecht5(latest).to(self.device)
            self.state = TrainerState(**saved["state"])
            self._forget_after(self.state.step)
            best = self.dir / "best" / TRAINER_FILE
            if best.exists():  # the best so far is recorded with the best voice
                best_state = json.loads(best.read_text())["state"]
                self.state.best_wer = best_state["best_wer"]
                self.state.best_step = best_state["best_step"]
        else:
            torch.manual_seed(config.seed)
            self.model = SpeechT5TTS(config.dims(len(self.tokenizer)))
            if config.init_from:
                self.warm_started = self._warm_start(config)
            self.model.to(self.device)
            self.state = TrainerState()
            self._forget_after(0)  # logs of a run killed before its first checkpoint
        self.config = config
        self.mel: MelDefinition = get_mel_definition(config.mel)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.lr,
            betas=(0.9, 0.98),
            weight_decay=config.weight_decay,
        )
        if (latest / OPTIMIZER_FILE).exists():
            opt_state = torch.load(
                latest / OPTIMIZER_FILE, map_location=self.device, weights_only=True
            )
            self.optimizer.load_state_dict(opt_state)

    def _warm_start(self, config: TrainConfig) -> dict:
        """Start from the tensors of ``config.init_from`` whose shapes match."""
        from tasks.tts.engines import resolve_voice_dir, voice_mel, voice_tokenizer

        source_dir = resolve_voice_dir(config.init_from)
        source_tokens = voice_tokenizer(source_dir)
        if list(getattr(source_tokens, "symbols", [])) != list(self.tokenizer.symbols):
            raise ValueError(
                f"--init-from {config.init_from}: its phoneme symbols differ from the "
                f"{config.front_end} front end's, so its embeddings would not fit"
            )
        source_mel = voice_mel(config.init_from)
        target_mel = get_mel_definition(config.mel)
        scale = 1.0
        if source_mel.log_base != target_mel.log_base:
            scale = math.log(10.0) if target_mel.log_base == "ln" else 1 / math.log(10)
        counts = warm_start(self.model, load_speecht5(source_dir), scale)
        return {**counts, "mel_scale": scale, "from": str(source_dir)}

    def _forget_after(self, step: int) -> None:
        """Drop log lines a killed run wrote after its last checkpoint (the resumed
        run redoes those steps), and a line it was killed in the middle of."""

        def keep(line: str) -> bool:
            try:
                return json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):
                return False

        for name in ("log.jsonl", "eval.jsonl"):
            path = self.dir / name
            if not path.exists():
                continue
            lines = path.read_text().splitlines()
            kept = [x for x in lines if x.strip() and keep(x)]
            if len(kept) != len(lines):
                path.write_text("".join(f"{x}\n" for x in kept))

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _autocast(self):
        """bfloat16 autocast where the hardware runs it natively: on an AVX2-only
        CPU it is emulated, and a training step took 4-7x longer than in float32
        (measured on the 2-core AMD EPYC of issue 17)."""
        if not self.config.bf16:
            return nullcontext()
        if self.device.type == "cpu" and not native_bf16(self.device):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def train_steps(
        self,
        data: TrainingSet,
        n_steps: int,
        deadline: float | None = None,
        log_every: int = 25,
        progress=None,
    ) -> list[dict]:
        """Run up to ``n_steps`` optimizer steps (fewer if ``deadline``, a
        ``time.monotonic()`` value, passes). Returns the logged loss records."""
        model, config, state = self.model, self.config, self.state
        model.train()
        n_frames = [m.shape[0] for m in data.mels]
        weights = config.loss_weights()
        records, window, t0 = [], [], time.monotonic()
        bad_in_a_row = 0

        def flush() -> None:
            nonlocal window, t0
            elapsed = time.monotonic() - t0
            record = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            record.update(
                step=state.step,
                epoch=state.epoch,
                lr=lr_at(state.step, config),
                steps_per_s=len(window) / max(elapsed, 1e-9),
            )
            state.train_seconds += elapsed
            records.append(record)
            with (self.dir / "log.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            if progress is not None:
                progress(record)
            window, t0 = [], time.monotonic()

        def epoch_batches() -> list[list[int]]:
            return length_buckets(
                n_frames,
                config.frames_per_batch,
                config.max_batch,
                config.seed,
                state.epoch,
            )

        batches = epoch_batches()
        for _ in range(n_steps):
            if deadline is not None and time.monotonic() > deadline:
                break
            if state.position >= len(batches):
                state.epoch, state.position = state.epoch + 1, 0
                batches = epoch_batches()
            index = batches[state.position]
            batch = collate(
                [data.ids[i] for i in index],
                [data.mels[i] for i in index],
                config.reduction_factor,
                self.tokenizer.pad_id,
            ).to(self.device)
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(state.step, config)
            with self._autocast():
                loss, parts, _ = tts_losses(model, batch, weights)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), config.grad_clip
            )
            state.position += 1
            if not torch.isfinite(grad_norm):  # skip the batch, give up if it persists
                bad_in_a_row += 1
                if bad_in_a_row >= 10:
                    raise FloatingPointError(
                        f"step {state.step}: 10 non-finite gradients in a row"
                    )
                continue
            bad_in_a_row = 0
            self.optimizer.step()
            state.step += 1
            parts["grad_norm"] = float(grad_norm)
            window.append(parts)
            if state.step % log_every == 0:
                flush()
        if window:
            flush()
        state.train_seconds += time.monotonic() - t0
        model.eval()
        return records

    def save(self, name: str = "latest", with_optimizer: bool = True) -> Path:
        """Write the voice (+ optimizer, trainer state) to CKPT_DIR/name atomically."""
        tmp = self.dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_speecht5(self.model, tmp, mel=self.mel.to_dict())
        self.tokenizer.save(tmp)
        if with_optimizer:
            torch.save(self.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        payload = {"config": asdict(self.config), "state": asdict(self.state)}
        (tmp / TRAINER_FILE).write_text(json.dumps(payload, indent=1))
        final = self.dir / name
        old = self.dir / f".{name}.old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return final
