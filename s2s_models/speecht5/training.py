"""Teacher-forced training of ``SpeechT5TTS``: batch layout and losses.

A batch holds, per utterance, its token ids and its target log10 mel (n_frames, 80).
Targets are padded to a multiple of the reduction factor r; the decoder input of step
s is target frame s*r - 1 (a zero frame for s = 0), so the model predicts frames
[s*r, s*r + r) from everything before them, as it does when generating.

Losses (all masked to real frames / tokens):

* L1 between the target and the mels before and after the post-net;
* stop-token BCE, positive class = the last frame of the utterance and every padding
  frame up to the next multiple of r, weighted by ``stop_pos_weight`` because there is
  one positive for hundreds of negatives;
* guided attention (Tachibana et al., 2017): attention weight at decoder step n and
  token t is penalised by 1 - exp(-(n/N - t/T)^2 / (2 g^2)), pushing chosen heads to a
  near-diagonal alignment early in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import SpeechT5TTS, TTSOutput
from .tokenizer import pad_ids


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    stop: float = 1.0
    stop_pos_weight: float = 5.0
    guided_attention: float = 10.0
    guided_sigma: float = 0.2
    # cross-attention heads the guided loss applies to: the first `guided_heads` of
    # every decoder layer
    guided_heads: int = 2


@dataclass
class TTSBatch:
    input_ids: Tensor  # (batch, n_text) right-padded
    attention_mask: Tensor  # (batch, n_text) 1 = real token
    target: Tensor  # (batch, n_steps * r, n_mels) zero-padded
    n_frames: Tensor  # (batch,) real frames per utterance

    def to(self, device: torch.device | str) -> TTSBatch:
        return TTSBatch(
            *(
                t.to(device)
                for t in (
                    self.input_ids,
                    self.attention_mask,
                    self.target,
                    self.n_frames,
                )
            )
        )


def collate(
    ids: list[list[int]], mels: list[Tensor], reduction_factor: int, pad_id: int
) -> TTSBatch:
    """Pad token ids and (n_frames, n_mels) targets into one batch."""
    input_ids, mask = pad_ids(ids, pad_id)
    r = reduction_factor
    n_max = max(m.shape[0] for m in mels)
    n_max = -(-n_max // r) * r
    target = torch.zeros(len(mels), n_max, mels[0].shape[1])
    for row, m in enumerate(mels):
        target[row, : m.shape[0]] = m.float()
    n_frames = torch.tensor([m.shape[0] for m in mels])
    return TTSBatch(input_ids, mask, target, n_frames)


def decoder_inputs(target: Tensor, reduction_factor: int) -> Tensor:
    """(batch, n_steps * r, n_mels) -> (batch, n_steps, n_mels): a zero frame, then
    the last frame of every step but the final one."""
    r = reduction_factor
    last_of_step = target[:, r - 1 :: r]
    zero = torch.zeros_like(last_of_step[:, :1])
    return torch.cat([zero, last_of_step[:, :-1]], dim=1)


def guided_attention_weights(
    n_steps: Tensor, n_text: Tensor, max_steps: int, max_text: int, sigma: float
) -> tuple[Tensor, Tensor]:
    """Penalty W (batch, max_steps, max_text) and the mask of real (step, token)
    pairs."""
    steps = torch.arange(max_steps, device=n_steps.device)[None, :, None]
    tokens = torch.arange(max_text, device=n_steps.device)[None, None, :]
    ns = n_steps[:, None, None].float()
    nt = n_text[:, None, None].float()
    w = 1.0 - torch.exp(-((steps / ns - tokens / nt) ** 2) / (2 * sigma**2))
    valid = (steps < ns) & (tokens < nt)
    return w * valid, valid


def tts_losses(
    model: SpeechT5TTS,
    batch: TTSBatch,
    weights: LossWeights = LossWeights(),
    prenet_masks: list[Tensor] | None = None,
) -> tuple[Tensor, dict[str, float], TTSOutput]:
    """One teacher-forced forward pass: (total loss, its parts as floats, outputs).

    Prenet dropout follows the model's training mode unless masks are given: in
    ``train()`` mode fresh masks are drawn per batch, in ``eval()`` mode none."""
    r = model.dims.reduction_factor
    if prenet_masks is None and model.training and model.dims.prenet_dropout > 0:
        n_steps = batch.target.shape[1] // r
        prenet_masks = model.draw_prenet_masks(n_steps, batch=batch.target.shape[0])
    out = model(
        batch.input_ids,
        batch.attention_mask,
        decoder_inputs(batch.target, r),
        None,
        prenet_masks,
    )
    n_total = batch.target.shape[1]
    frames = torch.arange(n_total, device=batch.target.device)[None, :]
    real = (frames < batch.n_frames[:, None]).float()  # (batch, n_total)
    padded_len = (batch.n_frames + r - 1) // r * r
    stop_valid = (frames < padded_len[:, None]).float()
    stop_target = (frames >= batch.n_frames[:, None] - 1).float() * stop_valid

    target = batch.target
    n_real = real.sum() * target.shape[-1]

    def masked_l1(pred: Tensor) -> Tensor:
        return ((pred.float() - target).abs() * real[..., None]).sum() / n_real

    l1_before = masked_l1(out.mels_before_postnet)
    l1_after = masked_l1(out.mels)
    bce = F.binary_cross_entropy_with_logits(
        out.stop_logits.float(),
        stop_target,
        pos_weight=torch.tensor(weights.stop_pos_weight, device=target.device),
        reduction="none",
    )
    stop = (bce * stop_valid).sum() / stop_valid.sum()

    n_text = batch.attention_mask.sum(-1)
    n_steps = padded_len // r
    w, valid = guided_attention_weights(
        n_steps, n_text, n_total // r, batch.input_ids.shape[1], weights.guided_sigma
    )
    heads = torch.cat(
        [a[:, : weights.guided_heads] for a in out.cross_attentions], dim=1
    ).float()  # (batch, n_layer * guided_heads, n_steps, n_text)
    guided = (heads * w[:, None]).sum() / (valid.sum() * heads.shape[1])

    total = (
        weights.l1 * (l1_before + l1_after)
        + weights.stop * stop
        + weights.guided_attention * guided
    )
    named = {"loss": total, "l1_before": l1_before, "l1_after": l1_after,
             "stop_bce": stop, "guided_attention": guided}  # fmt: skip
    parts = {k: float(v.detach()) for k, v in named.items()}
    return total, parts, out


@torch.no_grad()
def warm_start(
    model: SpeechT5TTS, source: SpeechT5TTS, mel_scale: float = 1.0
) -> dict[str, int]:
    """Copy into ``model`` every tensor of ``source`` with the same name and shape
    (the rest keep their fresh initialisation). Returns counts of what was copied.

    ``mel_scale`` is the ratio of the new mel's log units to the source's (ln 10 when
    a log10-mel voice starts a natural-log voice). The model predicts log-mels as
    they are, without normalisation, so the layers that write mels
    (``feat_out``, the post-net's last batch norm) are scaled by it and the layers
    that read them (the prenet's first linear, the post-net's first conv) by its
    inverse: the warm-started model then predicts the source's mels in the new
    units, and training starts from there."""
    target = model.state_dict()
    copied, skipped = 0, 0
    for name, tensor in source.state_dict().items():
        if name in target and target[name].shape == tensor.shape:
            target[name].copy_(tensor)
            copied += 1
        else:
            skipped += 1
    model.load_state_dict(target)
    if mel_scale != 1.0:
        model.feat_out.weight.mul_(mel_scale)
        model.feat_out.bias.mul_(mel_scale)
        model.postnet.norms[-1].weight.mul_(mel_scale)
        model.postnet.norms[-1].bias.mul_(mel_scale)
        model.postnet.convs[0].weight.div_(mel_scale)
        model.speech_decoder.prenet.layers[0].weight.div_(mel_scale)
    return {"copied": copied, "skipped": skipped, "fresh": len(target) - copied}
