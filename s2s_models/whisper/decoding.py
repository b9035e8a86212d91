"""Decoding 30-second Whisper windows: greedy, sampling, beam search, fallback.

One call decodes a batch of windows. After the prefix pass a :class:`DecodeState`
holds the batch. Greedy and sampling share :func:`_sample_loop`, which drops rows
from the batch as they emit end-of-text; its decoder steps are chosen once, up
front (:class:`EagerSteps` on the growing KV cache, or the fixed-shape
:class:`~s2s_models.whisper.static_decode.StaticDecoder`);
beam search keeps ``beam_size`` rows per window in :func:`_beam_loop`. Logit rules
(suppressed tokens, blank at the start, timestamp grammar) live in :class:`LogitRules`
and act on the whole batch with tensor ops; only the timestamp grammar looks at each
row's history, in a loop over rows (never over the vocabulary).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from s2s_models.whisper.model import KVCache, Whisper
from s2s_models.whisper.static_decode import StaticDecoder, static_decoder
from s2s_models.whisper.tokenizer import TIME_PRECISION, WhisperTokenizer


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode one 30 s window; change with ``dataclasses.replace``."""

    task: str = "transcribe"  # "transcribe" or "translate" (to English)
    language: str | None = None  # None: detect (multilingual) / "en" (English-only)
    temperature: float = 0.0  # 0: greedy or beam search; > 0: sampling
    sample_len: int | None = None  # hard cap on new tokens; None: n_text_ctx // 2
    beam_size: int | None = None  # None or 1: greedy; > 1: beam search (temp 0 only)
    patience: float | None = None  # beam search: finished candidates = beam * patience
    length_penalty: float | None = None  # None: divide by length; else GNMT alpha
    best_of: int | None = None  # sampling: candidates per window, best kept
    prompt: tuple[int, ...] | str | None = None  # previous text (tokens or str)
    suppress_tokens: str | tuple[int, ...] | None = "-1"  # "-1": non-speech symbols
    suppress_blank: bool = True  # forbid a blank or end-of-text as the first token
    without_timestamps: bool = True  # True: text only; False: timestamp tokens
    max_initial_timestamp: float | None = 1.0  # seconds; first timestamp's upper bound
    seed: int = 0  # sampling noise; a window's samples never depend on its batch mates
    decode_steps: str = "auto"  # greedy steps: "eager" (growing KV cache), "static"
    # (preallocated cache, fixed shapes), "graphs" (static, replayed as CUDA graphs);
    # "auto": graphs on CUDA, eager on the CPU. Same tokens either way.

    def verify(self) -> None:
        """Raise ValueError on inconsistent options."""
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be transcribe or translate: {self.task!r}")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.sample_len is not None and self.sample_len < 1:
            raise ValueError("sample_len must be >= 1")
        if self.beam_size is not None and self.beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        if self.beam_size not in (None, 1) and self.temperature > 0:
            raise ValueError("beam search is deterministic: use temperature 0")
        if self.best_of is not None:
            if self.best_of < 1:
                raise ValueError("best_of must be >= 1")
            if self.temperature == 0:
                raise ValueError("best_of needs temperature > 0 (greedy is unique)")
        if self.patience is not None and self.beam_size in (None, 1):
            raise ValueError("patience applies to beam search only")
        if self.patience is not None and self.patience <= 0:
            raise ValueError("patience must be > 0")
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise ValueError("length_penalty must be in [0, 1]")
        if self.decode_steps not in ("auto", "eager", "static", "graphs"):
            raise ValueError(
                f"decode_steps must be auto, eager, static or graphs: "
                f"{self.decode_steps!r}"
            )
        if isinstance(self.suppress_tokens, str) and self.suppress_tokens not in (
            "-1",
            "",
        ):
            raise ValueError('suppress_tokens must be "-1", "", None or token ids')


@dataclass(frozen=True)
class WindowSegment:
    """Text between two timestamp tokens, in seconds from the window start."""

    start: float
    end: float | None  # None when the window ended before a closing timestamp
    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class DecodingResult:
    """Decoded text of one window."""

    tokens: tuple[int, ...]  # sampled tokens (text and timestamps), no eot
    text: str  # decoded text tokens, special tokens dropped
    language: str  # language code used (detected or given)
    avg_logprob: float  # sum of token log-probs (eot included) / (len(tokens) + 1)
    no_speech_prob: float  # P(no-speech token) at the start-of-transcript position
    compression_ratio: float  # len(text bytes) / len(zlib(text bytes))
    temperature: float  # temperature this result was decoded at
    segments: tuple[WindowSegment, ...] = ()  # only when timestamps were decoded
    language_probs: dict[str, float] | None = field(default=None, repr=False)


def compression_ratio(text: str) -> float:
    """Bytes over zlib-compressed bytes: high values flag repetition loops."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _features(model: Whisper, mel_or_features: Tensor) -> Tensor:
    """Encoder output for mel (B, n_mels, 3000), or pass features (B, 1500, D) on."""
    dims = model.dims
    if tuple(mel_or_features.shape[1:]) == (dims.n_audio_ctx, dims.n_audio_state):
        return mel_or_features.to(device=model.device, dtype=model.dtype)
    return model.embed_audio(mel_or_features)


@torch.inference_mode()
def detect_language(
    model: Whisper, tokenizer: WhisperTokenizer, mel_or_audio_features: Tensor
) -> tuple[list[str], list[dict[str, float]]]:
    """Most likely language of each window.

    Parameters
    ----------
    mel_or_audio_features
        ``(batch, n_mels, 3000)`` log-mel or ``(batch, n_audio_ctx, n_state)``
        encoder output.

    Returns
    -------
    (codes, probs)
        ``codes[i]`` is the best language code of window ``i``; ``probs[i]`` maps every
        language code to its probability.
    """
    if not model.is_multilingual:
        raise ValueError("English-only models cannot detect the language")
    features = _features(model, mel_or_audio_features)
    sot = torch.full((features.shape[0], 1), tokenizer.sot, device=model.device)
    logits = model.logits(sot, features)[:, 0]  # (batch, n_vocab)
    language_ids = torch.tensor(tokenizer.all_language_tokens, device=logits.device)
    probs = (
        logits.index_select(1, language_ids).softmax(dim=-1).cpu()
    )  # (batch, n_lang)
    codes = tokenizer.language_codes
    best = [codes[i] for i in probs.argmax(dim=-1).tolist()]
    return best, [dict(zip(codes, row.tolist(), strict=True)) for row in probs]


class LogitRules:
    """Masks applied to next-token logits before choosing a token.

    Order as in openai-whisper: blank at the start, suppressed tokens, then the
    timestamp grammar (paired timestamps, non-decreasing, the first one at most
    ``max_initial_timestamp``, and a timestamp forced whenever the timestamp tokens
    together are likelier than the best text token).
    """

    def __init__(
        self,
        tokenizer: WhisperTokenizer,
        options: DecodingOptions,
        n_vocab: int,
        sample_begin: int,
        device: torch.device,
    ):
        self.tok = tokenizer
        self.sample_begin = sample_begin
        self.timestamps = not options.without_timestamps
        suppress = torch.zeros(n_vocab, dtype=torch.bool)
        suppress[list(_suppress_ids(tokenizer, options))] = True
        if self.timestamps:
            suppress[tokenizer.no_timestamps] = True
        self.suppress = suppress.to(device)  # (n_vocab,)
        blank = torch.zeros(n_vocab, dtype=torch.bool)
        if options.suppress_blank:
            blank[tokenizer.encode(" ") + [tokenizer.eot]] = True
        self.blank = blank.to(device)  # (n_vocab,)
        self.max_initial = None
        if options.max_initial_timestamp is not None:
            self.max_initial = round(options.max_initial_timestamp / TIME_PRECISION)

    def apply(self, logits: Tensor, tokens: Tensor) -> Tensor:
        """Mask ``logits`` (rows, n_vocab) given each row's ``tokens`` (rows, T)."""
        at_start = tokens.shape[1] == self.sample_begin
        mask = self.suppress | self.blank if at_start else self.suppress
        logits = logits.masked_fill(mask, float("-inf"))
        if self.timestamps:
            logits = self._timestamp_rules(logits, tokens, at_start)
        return logits

    def _timestamp_rules(
        self, logits: Tensor, tokens: Tensor, at_start: bool
    ) -> Tensor:
        ts_begin, eot = self.tok.timestamp_begin, self.tok.eot
        sampled = tokens[:, self.sample_begin :].tolist()
        for row, seq in enumerate(sampled):
            last_ts = len(seq) >= 1 and seq[-1] >= ts_begin
            penultimate_ts = len(seq) < 2 or seq[-2] >= ts_begin
            if last_ts:
                if penultimate_ts:  # a closed pair: text (or eot) comes next
                    logits[row, ts_begin:] = float("-inf")
                else:  # an open segment's end: another timestamp or eot
                    logits[row, :eot] = float("-inf")
            stamps = [t for t in seq if t >= ts_begin]
            if stamps:
                # Non-decreasing; a new segment must not start where the last ended.
                floor = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
                logits[row, ts_begin:floor] = float("-inf")
        if at_start:
            logits[:, :ts_begin] = float("-inf")
            if self.max_initial is not None:
                logits[:, ts_begin + self.max_initial + 1 :] = float("-inf")
        logprobs = F.log_softmax(logits, dim=-1)
        ts_mass = logprobs[:, ts_begin:].logsumexp(dim=-1)  # (rows,)
        best_text = logprobs[:, :ts_begin].max(dim=-1).values  # (rows,)
        force = ts_mass > best_text
        logits[force, :ts_begin] = float("-inf")
        return logits


def _suppress_ids(tokenizer: WhisperTokenizer, options: DecodingOptions) -> set[int]:
    """Token ids never sampled: the option's list plus task/control tokens."""
    spec = options.suppress_tokens
    ids: set[int] = set()
    if spec == "-1":
        ids.update(tokenizer.non_speech_tokens)
    elif spec:
        ids.update(int(t) for t in spec if int(t) >= 0)
    ids.update(
        {
            tokenizer.transcribe,
            tokenizer.translate,
            tokenizer.sot,
            tokenizer.sot_prev,
            tokenizer.sot_lm,
            tokenizer.no_speech,
        }
    )
    return ids


def _prefix(
    tokenizer: WhisperTokenizer,
    options: DecodingOptions,
    languages: list[str],
    n_text_ctx: int,
) -> tuple[list[list[int]], int]:
    """Per-window start tokens (optional prompt, then sot sequence) and sot index."""
    prompt: list[int] = []
    if options.prompt is not None:
        text = options.prompt
        ids = tokenizer.encode(" " + text.strip()) if isinstance(text, str) else text
        prompt = [tokenizer.sot_prev] + list(ids)[-(n_text_ctx // 2 - 1) :]
    rows = []
    for language in languages:
        sot_seq = tokenizer.sot_sequence(
            language if tokenizer.multilingual else None,
            options.task,
            options.without_timestamps,
        )
        rows.append(prompt + sot_seq)
    return rows, len(prompt)


def _resolve_languages(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    options: DecodingOptions,
    features: Tensor,
) -> tuple[list[str], list[dict[str, float] | None]]:
    batch = features.shape[0]
    if not model.is_multilingual:
        if options.language not in (None, "en"):
            raise ValueError(f"English-only model, got language={options.language!r}")
        return ["en"] * batch, [None] * batch
    if options.language is not None:
        tokenizer.language_token(options.language)  # raises on an unknown code
        return [options.language] * batch, [None] * batch
    codes, probs = detect_language(model, tokenizer, features)
    return codes, list(probs)


def _rank_score(tokens: list[int], sum_logprob: float, length_penalty: float | None):
    """Length-normalised log-prob: divide by length, or by the GNMT penalty."""
    length = len(tokens)
    if length_penalty is None:
        penalty = max(length, 1)
    else:
        penalty = ((5 + length) / 6) ** length_penalty
    return sum_logprob / penalty


def _gumbel_sample(scaled: Tensor, candidates: list[int], step: int, seed: int):
    """One token per row by the Gumbel-max trick: argmax(logits / T + Gumbel noise).

    The noise depends only on (seed, step, the row's candidate number within its
    window), never on the other rows of the batch, so a file decodes the same
    whatever it is batched with; distinct candidates (best_of) get distinct noise.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    uniform = torch.rand((max(candidates) + 1, scaled.shape[-1]), generator=gen)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-10, 1.0 - 1e-7)))
    noise = gumbel.to(scaled.device)[torch.tensor(candidates, device=scaled.device)]
    return (scaled.float() + noise).argmax(dim=-1)  # (rows,)


@dataclass
class DecodeState:
    """A batch of windows after the prefix pass, ready for the token loop."""

    tokens: Tensor  # (rows, T): prefix and tokens so far of every row
    features: Tensor  # (windows, n_audio_ctx, n_audio_state) encoder output
    cache: KVCache  # self- and cross-attention K/V of every row
    logits: Tensor  # (rows, n_vocab) float32 next-token logits


class EagerSteps:
    """Decoder steps on the growing :class:`KVCache`: each step appends one
    position; finished rows are dropped from the cache and the features."""

    def __init__(self, model: Whisper, state: DecodeState):
        self.model, self.features, self.cache = model, state.features, state.cache

    def step(self, tokens: Tensor) -> Tensor:
        """One token per active row (rows,) -> next-token logits (rows, n_vocab)."""
        return self.model.logits(tokens[:, None], self.features, self.cache)[:, -1]

    def keep(self, rows: list[int]) -> None:
        """Keep active rows ``rows`` (increasing)."""
        index = torch.tensor(rows, device=self.features.device)
        self.cache.reorder(index)
        self.features = self.features[index]


def _sample_loop(
    state: DecodeState,
    rules: LogitRules,
    steps: EagerSteps | StaticDecoder,
    options: DecodingOptions,
    max_new: int,
    eot: int,
    n_group: int = 1,
) -> list[tuple[list[int], float]]:
    """Greedy (temperature 0) or sampled decoding; finished rows leave the batch.

    ``steps`` runs the decoder (eager, or fixed-shape buffers replayed as CUDA
    graphs: same tokens). Rows come in groups of ``n_group`` candidates per window.
    Returns (new tokens without eot, sum of log-probs including eot's) per row.
    """
    seqs, logits = state.tokens, state.logits
    n_rows = seqs.shape[0]
    active = list(range(n_rows))  # original row index of each batch row
    new_tokens: list[list[int]] = [[] for _ in range(n_rows)]
    sum_logprobs = [0.0] * n_rows
    for step in range(max_new):
        logits = rules.apply(logits, seqs)
        logprobs = F.log_softmax(logits, dim=-1)  # (rows, n_vocab)
        if options.temperature == 0:
            chosen = logits.argmax(dim=-1)
        else:
            candidates = [row % n_group for row in active]
            scaled = logits / options.temperature
            chosen = _gumbel_sample(scaled, candidates, step, options.seed)
        chosen_lp = logprobs.gather(1, chosen[:, None])[:, 0].tolist()
        chosen_list = chosen.tolist()
        for row, (token, lp) in enumerate(zip(chosen_list, chosen_lp, strict=True)):
            sum_logprobs[active[row]] += lp
            if token != eot:
                new_tokens[active[row]].append(token)
        seqs = torch.cat([seqs, chosen[:, None]], dim=1)  # (rows, T + 1)
        keep = [row for row, token in enumerate(chosen_list) if token != eot]
        if not keep or step == max_new - 1:
            break
        if len(keep) < len(active):
            steps.keep(keep)
            index = torch.tensor(keep, device=seqs.device)
            seqs, chosen = seqs[index], chosen[index]
            active = [active[row] for row in keep]
        logits = steps.step(chosen)
    return list(zip(new_tokens, sum_logprobs, strict=True))


def _beam_loop(
    model: Whisper,
    rules: LogitRules,
    state: DecodeState,
    options: DecodingOptions,
    max_new: int,
    eot: int,
) -> list[tuple[list[int], float]]:
    """Beam search over ``beam_size`` rows per window; returns the best per window.

    ``state`` has one row per window. Each step, every beam
    proposes its ``beam_size + 1`` best continuations; the best ``beam_size``
    unfinished ones survive and finished ones are set aside until each window has
    ``round(beam_size * patience)`` of them.
    """
    seqs, features, cache, logits = (
        state.tokens,
        state.features,
        state.cache,
        state.logits,
    )
    n_windows, beam = seqs.shape[0], options.beam_size
    prefix_len = seqs.shape[1]
    spread = torch.arange(n_windows, device=seqs.device).repeat_interleave(beam)
    cache.reorder(spread, cross=False)
    cache.cross_group = beam  # beams of a window share its cross K/V (model.py)
    seqs, logits = seqs[spread], logits[spread]
    sum_logprobs = [0.0] * (n_windows * beam)
    finished: list[dict[tuple[int, ...], float]] = [{} for _ in range(n_windows)]
    max_candidates = round(beam * (options.patience or 1.0))
    for _ in range(max_new):
        logprobs = F.log_softmax(rules.apply(logits, seqs), dim=-1)
        top_lp, top_ids = logprobs.topk(beam + 1, dim=-1)  # (rows, beam + 1)
        top_lp, top_ids, history = top_lp.tolist(), top_ids.tolist(), seqs.tolist()
        sources: list[int] = []
        next_ids: list[int] = []
        next_lp: list[float] = []
        for window in range(n_windows):
            scores: dict[tuple[int, ...], tuple[float, int]] = {}
            for row in range(window * beam, (window + 1) * beam):
                for lp, token in zip(top_lp[row], top_ids[row], strict=True):
                    sequence = tuple(history[row] + [token])
                    scores[sequence] = (sum_logprobs[row] + lp, row)
            ranked = sorted(scores.items(), key=lambda item: item[1][0], reverse=True)
            kept = 0
            for sequence, (score, row) in ranked:
                if sequence[-1] == eot:
                    if len(finished[window]) < max_candidates:
                        finished[window][sequence[prefix_len:-1]] = score
                    continue
                sources.append(row)
                next_ids.append(sequence[-1])
                next_lp.append(score)
                kept += 1
                if kept == beam:
                    break
        if all(len(done) >= max_candidates for done in finished):
            break
        index = torch.tensor(sources, device=seqs.device)
        chosen = torch.tensor(next_ids, device=seqs.device)
        # Sources stay inside their window, so row j keeps window j // beam.
        cache.reorder(index, cross=False)
        seqs = torch.cat([seqs[index], chosen[:, None]], dim=1)
        sum_logprobs = next_lp
        logits = model.logits(chosen[:, None], features, cache)[:, -1]
    return _best_beams(seqs, sum_logprobs, finished, beam, prefix_len, options)


def _best_beams(seqs, sum_logprobs, finished, beam, prefix_len, options):
    """Fill short candidate lists with live beams, then rank by length penalty."""
    history = seqs.tolist()
    best = []
    for window, done in enumerate(finished):
        candidates = dict(done)
        rows = range(window * beam, (window + 1) * beam)
        for row in sorted(rows, key=lambda r: sum_logprobs[r], reverse=True):
            if len(candidates) >= beam:
                break
            candidates.setdefault(tuple(history[row][prefix_len:]), sum_logprobs[row])
        tokens, score = max(
            candidates.items(),
            key=lambda item: _rank_score(
                list(item[0]), item[1], options.length_penalty
            ),
        )
        best.append((list(tokens), score))
    return best


def _segments(
    tokenizer: WhisperTokenizer, tokens: list[int]
) -> tuple[WindowSegment, ...]:
    """Split ``<|t0|> text <|t1|>`` runs into segments (seconds from window start)."""
    ts_begin = tokenizer.timestamp_begin
    segments: list[WindowSegment] = []
    start: float | None = None
    text: list[int] = []
    for token in tokens:
        if token >= ts_begin:
            seconds = round((token - ts_begin) * TIME_PRECISION, 2)
            if start is None:
                start, text = seconds, []
            else:
                segments.append(
                    WindowSegment(start, seconds, tokenizer.decode(text), tuple(text))
                )
                start = None
        else:
            if start is None:  # text without an opening timestamp (grammar off)
                start = segments[-1].end if segments else 0.0
            text.append(token)
    if start is not None and text:
        segments.append(WindowSegment(start, None, tokenizer.decode(text), tuple(text)))
    return tuple(segments)


@torch.inference_mode()
def decode(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    mel: Tensor,
    options: DecodingOptions | None = None,
) -> list[DecodingResult]:
    """Decode a batch of 30 s windows.

    Parameters
    ----------
    model, tokenizer
        From :func:`s2s_models.whisper.load_model`.
    mel
        ``(batch, n_mels, 3000)`` log-mel features, or ``(batch, n_audio_ctx,
        n_audio_state)`` encoder output to skip the encoder.
    options
        :class:`DecodingOptions`; defaults to greedy English/auto-detected text.

    Returns
    -------
    list[DecodingResult]
        One per window, in input order.
    """
    options = options or DecodingOptions()
    options.verify()
    features = _features(model, mel)  # (batch, n_audio_ctx, n_audio_state)
    languages, language_probs = _resolve_languages(model, tokenizer, options, features)
    n_text_ctx = model.dims.n_text_ctx
    rows, sot_index = _prefix(tokenizer, options, languages, n_text_ctx)
    sample_begin = len(rows[0])
    max_new = min(options.sample_len or n_text_ctx // 2, n_text_ctx - sample_begin)
    rules = LogitRules(
        tokenizer, options, model.dims.n_vocab, sample_begin, model.device
    )
    tokens = torch.tensor(rows, device=model.device)  # (batch, sample_begin)
    cache = KVCache()
    first = model.logits(tokens, features, cache, positions=[sot_index, -1])
    no_speech = first[:, 0].softmax(dim=-1)[:, tokenizer.no_speech].tolist()
    state = DecodeState(tokens, features, cache, first[:, 1])
    if options.beam_size not in (None, 1):
        best = _beam_loop(model, rules, state, options, max_new, tokenizer.eot)
    else:
        best = _sample_group(model, rules, state, options, max_new, tokenizer.eot)
    results = []
    for i, (new_tokens, sum_logprob) in enumerate(best):
        text = tokenizer.decode(new_tokens)
        results.append(
            DecodingResult(
                tokens=tuple(new_tokens),
                text=text,
                language=languages[i],
                avg_logprob=sum_logprob / (len(new_tokens) + 1),
                no_speech_prob=no_speech[i],
                compression_ratio=compression_ratio(text),
                temperature=options.temperature,
                segments=()
                if options.without_timestamps
                else _segments(tokenizer, new_tokens),
                language_probs=language_probs[i],
            )
        )
    return results


def _sample_group(model, rules, state: DecodeState, options, max_new, eot):
    """Greedy, or ``best_of`` samples per window ranked by length-normalised score.

    The decoder steps are chosen once: fixed-shape buffers (replayed as CUDA graphs
    on CUDA) for greedy decoding when ``decode_steps`` asks for them, else the eager
    growing cache.
    """
    n_group = (options.best_of or 1) if options.temperature > 0 else 1
    n_windows = state.tokens.shape[0]
    if n_group > 1:
        spread = torch.arange(n_windows, device=state.tokens.device)
        spread = spread.repeat_interleave(n_group)
        state.cache.reorder(spread)
        state = DecodeState(
            state.tokens[spread], state.features[spread], state.cache,
            state.logits[spread],
        )  # fmt: skip
    mode = options.decode_steps
    if mode == "auto":
        mode = "graphs" if model.device.type == "cuda" else "eager"
    if options.temperature == 0 and n_group == 1 and mode != "eager":
        steps = static_decoder(model, state.cache, graphs=mode == "graphs")
    else:
        steps = contextlib.nullcontext(EagerSteps(model, state))
    with steps as stepper:
        candidates = _sample_loop(state, rules, stepper, options, max_new, eot, n_group)
    best = []
    for window in range(n_windows):
        group = candidates[window * n_group : (window + 1) * n_group]
        best.append(
            max(group, key=lambda c: _rank_score(c[0], c[1], options.length_penalty))
        )
    return best


def decode_with_fallback(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    mel: Tensor,
    options: DecodingOptions | None = None,
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    compression_ratio_threshold: float | None = 2.4,
    logprob_threshold: float | None = -1.0,
    no_speech_threshold: float | None = 0.6,
    needs_retry: Callable[[int, DecodingResult], bool] | None = None,
) -> list[DecodingResult]:
    """Decode, then re-decode at the next temperature only the windows that fail.

    A window fails when its text is too repetitive (compression ratio above the
    threshold) or too unlikely (average log-prob below the threshold), unless it is
    judged silence (no-speech probability above its threshold and log-prob below
    the log-prob threshold), which is kept as is. ``needs_retry(i, result)`` lets the
    caller fail window ``i`` for reasons of its own (text that cannot match the
    audio). After the last temperature the last attempt is kept.

    Parameters
    ----------
    mel
        ``(batch, n_mels, 3000)`` log-mel or ``(batch, n_audio_ctx, n_state)``
        encoder output (the encoder then runs once for all attempts).

    Returns
    -------
    list[DecodingResult]
        One per window, in input order.
    """
    options = options or DecodingOptions()
    with torch.inference_mode():
        features = _features(model, mel)
    results: list[DecodingResult | None] = [None] * features.shape[0]
    pending = list(range(features.shape[0]))
    for temperature in temperatures:
        attempt = replace(options, temperature=temperature)
        if temperature > 0:
            attempt = replace(attempt, beam_size=None, patience=None)
        else:
            attempt = replace(attempt, best_of=None)
        index = torch.tensor(pending, device=features.device)
        decoded = decode(model, tokenizer, features[index], attempt)
        still_failing = []
        for item, result in zip(pending, decoded, strict=True):
            results[item] = result
            if _needs_fallback(
                result,
                compression_ratio_threshold,
                logprob_threshold,
                no_speech_threshold,
            ) or (needs_retry is not None and needs_retry(item, result)):
                still_failing.append(item)
        pending = still_failing
        if not pending:
            break
    return results


def _needs_fallback(result, ratio_threshold, logprob_threshold, no_speech_threshold):
    fails = (
        ratio_threshold is not None and result.compression_ratio > ratio_threshold
    ) or (logprob_threshold is not None and result.avg_logprob < logprob_threshold)
    silence = (
        no_speech_threshold is not None
        and result.no_speech_prob > no_speech_threshold
        and logprob_threshold is not None
        and result.avg_logprob < logprob_threshold
    )
    return fails and not silence
