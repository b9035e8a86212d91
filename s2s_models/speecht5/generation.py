"""Batched autoregressive mel generation for ``SpeechT5TTS``.

Each decoder step consumes the last predicted mel frame and emits ``r`` new frames plus
``r`` stop logits. An utterance ends on its own, independent of the rest of the batch:

* it may stop once it has run ``int(minlenratio * n_text / r)`` steps, and it stops as
  soon as the sigmoid stop probabilities of one step's ``r`` frames sum to at least
  ``threshold``;
* it is cut at ``int(maxlenratio * n_text / r)`` steps (at least 1, at most
  ``max_speech_positions``), where ``n_text`` counts *its own* tokens, ``</s>``
  included. (Hugging Face's ``generate`` uses the padded batch length here, so a batch
  item that hits the limit may run longer there than alone.)

Finished utterances leave the batch (their rows are dropped from the KV cache), and the
post-net runs once at the end over every utterance's frames.

``generate_speech_checked`` checks each result against its text: an utterance that
stopped with fewer frames than its ``min_frames`` (say, after the first sentence of
two, or at an abbreviation's period) is generated again with other prenet-dropout
seeds, and is flagged ``cut_short`` when every try stays that short.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .model import KVCache, SpeechT5TTS


@dataclass(frozen=True)
class GenerationOptions:
    # stop once the stop probabilities of one step's r frames sum to at least this
    threshold: float = 0.5
    # no stop before int(minlenratio * n_text / r) steps
    minlenratio: float = 0.0
    # at most int(maxlenratio * n_text / r) steps
    maxlenratio: float = 20.0
    # prenet dropout at inference, as the model was trained to expect; False = off
    prenet_dropout: bool = True
    # seed of the prenet dropout masks; None draws from torch's global generator
    seed: int | None = None
    # keep each utterance's cross-attention weights (n_layer, n_head, n_steps, n_text)
    return_cross_attentions: bool = False
    # self-attention keys/values in buffers sized for the longest utterance, filled
    # in place, instead of concatenated at every step (same output)
    preallocate_cache: bool = True

    def verify(self) -> None:
        if not 0.0 < self.threshold:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if self.minlenratio < 0.0 or self.maxlenratio <= 0.0:
            raise ValueError("minlenratio must be >= 0 and maxlenratio > 0")


@dataclass(frozen=True)
class GenerationResult:
    mels: list[Tensor]  # per utterance, (n_frames, n_mels) log10 mel after the post-net
    stopped: list[bool]  # True: the stop token ended it; False: it hit the step limit
    cross_attentions: (
        list[Tensor] | None
    )  # per utterance (n_layer, n_head, n_steps, n_text)
    # per utterance: stopped shorter than its text needs on every try (only set by
    # generate_speech_checked)
    cut_short: list[bool] | None = None

    @property
    def lengths(self) -> list[int]:
        return [m.shape[0] for m in self.mels]

    def padded(self, value: float = 0.0) -> tuple[Tensor, Tensor]:
        """(batch, max_frames, n_mels) padded with ``value``, and lengths (batch,)."""
        mels = torch.nn.utils.rnn.pad_sequence(
            self.mels, batch_first=True, padding_value=value
        )
        return mels, torch.tensor(self.lengths)


def step_limits(
    n_text: list[int], options: GenerationOptions, reduction_factor: int, max_steps: int
) -> tuple[list[int], list[int]]:
    """Per utterance (min_steps, max_steps) from its own token count."""
    lo = [int(n * options.minlenratio / reduction_factor) for n in n_text]
    hi = [int(n * options.maxlenratio / reduction_factor) for n in n_text]
    hi = [min(max(h, 1), max_steps) for h in hi]
    return [min(a, h) for a, h in zip(lo, hi, strict=True)], hi


@torch.no_grad()
def generate_speech(
    model: SpeechT5TTS,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    speaker_embeddings: Tensor | None = None,
    options: GenerationOptions = GenerationOptions(),
) -> GenerationResult:
    """Generate log10 mel spectrograms for a batch of token sequences.

    Parameters
    ----------
    model : SpeechT5TTS, in eval mode.
    input_ids : (batch, n_text) int64 token ids, right-padded with ``pad_token_id``.
    attention_mask : (batch, n_text), 1 for real tokens; default: ids != pad.
    speaker_embeddings : (batch, n_speaker) or (1, n_speaker) x-vectors, or None.
    options : GenerationOptions.

    Returns
    -------
    GenerationResult with one (n_frames, n_mels) mel per utterance, n_frames a multiple
    of the model's reduction factor.
    """
    options.verify()
    dims = model.dims
    batch = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = (input_ids != dims.pad_token_id).long()
    if speaker_embeddings is not None and speaker_embeddings.shape[0] != batch:
        speaker_embeddings = speaker_embeddings.expand(batch, -1)
    n_text = attention_mask.sum(-1).tolist()
    min_steps, max_steps = step_limits(
        n_text, options, dims.reduction_factor, dims.max_speech_positions
    )
    masks = None
    if options.prenet_dropout and dims.prenet_dropout > 0:
        # One mask row per decoder position for the longest possible utterance, drawn
        # up front and shared by the batch: a given seed gives each utterance the same
        # masks whatever else is in the batch.
        gen = (
            None
            if options.seed is None
            else torch.Generator().manual_seed(options.seed)
        )
        masks = model.draw_prenet_masks(dims.max_speech_positions, gen)

    memory = model.text_encoder(input_ids, attention_mask)  # (batch, n_text, n_state)
    rows = _Rows(torch.arange(batch), memory, attention_mask, speaker_embeddings)
    capacity = max(max_steps) if options.preallocate_cache else None
    cache = KVCache.empty(dims.n_speech_layer, capacity)
    frame = memory.new_zeros(batch, 1, dims.n_mels)  # an all-zero frame starts decoding
    chunks: list[list[Tensor]] = [[] for _ in range(batch)]
    attns: list[list[Tensor]] = [[] for _ in range(batch)]
    stopped = [False] * batch
    step = 0
    while rows.items.numel() > 0:
        step += 1
        hidden, cross = model.speech_decoder(
            frame, rows.memory, rows.memory_mask, rows.speaker, cache, masks
        )
        mels, logits = model.project(hidden)  # (n_active, r, n_mels), (n_active, r)
        stop = torch.sigmoid(logits).sum(-1) >= options.threshold  # (n_active,)
        keep = []
        for row, item in enumerate(rows.items.tolist()):
            chunks[item].append(mels[row])
            if options.return_cross_attentions:  # (n_layer, n_head, n_text)
                attns[item].append(
                    torch.stack([w[row, :, 0, : n_text[item]] for w in cross])
                )
            if step >= min_steps[item] and (bool(stop[row]) or step >= max_steps[item]):
                stopped[item] = bool(stop[row])
            else:
                keep.append(row)
        if len(keep) < rows.items.numel():
            index = torch.tensor(keep, dtype=torch.long, device=memory.device)
            cache, rows = cache.select(index), rows.select(index)
            mels = mels[index]
        frame = mels[:, -1:, :]  # the last of the r frames feeds the next step

    mels_out = _postnet_each(model, [torch.cat(c) for c in chunks])
    cross_out = None
    if options.return_cross_attentions:
        cross_out = [torch.stack(a, dim=2) for a in attns]
    return GenerationResult(mels_out, stopped, cross_out)


RETRY_SEED_STEP = 7919  # seed + k * this for the k-th retry (a prime: no overlap)


def generate_speech_checked(
    model: SpeechT5TTS,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    speaker_embeddings: Tensor | None,
    options: GenerationOptions,
    min_frames: list[int],
    retries: int = 2,
) -> GenerationResult:
    """``generate_speech``, then up to ``retries`` more tries, each with another
    seed, for the utterances that stopped before ``min_frames[i]`` frames; the
    longest try is kept. ``cut_short[i]`` is True when every try was short.

    ``min_frames`` comes from the text (its phoneme count times the fewest frames a
    phoneme plausibly takes); an utterance cut at the step limit is not retried.
    """
    if attention_mask is None:
        attention_mask = (input_ids != model.dims.pad_token_id).long()
    result = generate_speech(
        model, input_ids, attention_mask, speaker_embeddings, options
    )
    mels, stopped = list(result.mels), list(result.stopped)
    short = [i for i, m in enumerate(mels) if stopped[i] and m.shape[0] < min_frames[i]]
    for attempt in range(1, retries + 1):
        if not short:
            break
        seed = (
            None if options.seed is None else options.seed + attempt * RETRY_SEED_STEP
        )
        index = torch.tensor(short, device=input_ids.device)
        n_text = int(attention_mask[index].sum(-1).max())
        speaker = speaker_embeddings
        if speaker is not None and speaker.shape[0] > 1:
            speaker = speaker[index]
        again = generate_speech(
            model, input_ids[index, :n_text], attention_mask[index, :n_text], speaker,
            replace(options, seed=seed, return_cross_attentions=False),
        )  # fmt: skip
        for j, i in enumerate(short):
            if again.mels[j].shape[0] > mels[i].shape[0]:
                mels[i], stopped[i] = again.mels[j], again.stopped[j]
        short = [i for i in short if mels[i].shape[0] < min_frames[i]]
    cut_short = [i in short for i in range(len(mels))]
    return GenerationResult(mels, stopped, result.cross_attentions, cut_short)


@dataclass(frozen=True)
class _Rows:
    """Per-row inputs of the utterances still decoding, and which utterance each is."""

    items: Tensor  # (n_active,) original batch index
    memory: Tensor  # (n_active, n_text, n_state)
    memory_mask: Tensor  # (n_active, n_text)
    speaker: Tensor | None  # (n_active, n_speaker)

    def select(self, index: Tensor) -> _Rows:
        speaker = None if self.speaker is None else self.speaker[index]
        return _Rows(
            self.items[index.cpu()],
            self.memory[index],
            self.memory_mask[index],
            speaker,
        )


def _postnet_each(model: SpeechT5TTS, mels: list[Tensor]) -> list[Tensor]:
    """Post-net over a padded batch, masked so each item equals its solo result."""
    padded = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
    lengths = torch.tensor([m.shape[0] for m in mels], device=padded.device)
    out = model.postnet(padded, lengths)
    return [out[i, :n] for i, n in enumerate(lengths.tolist())]
