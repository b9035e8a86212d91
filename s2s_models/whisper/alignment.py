"""Word-level timestamps: dynamic time warping over cross-attention.

Some cross-attention heads of Whisper's decoder follow the audio closely: while the
decoder reads a text token, they look at the audio frames where it is spoken. The
published recipe (openai-whisper's ``timing.py``, followed by faster-whisper):

1. Force-decode ``sot sequence + <|notimestamps|> + text tokens + <|endoftext|>``
   over the window's encoder output and keep the cross-attention of the *alignment
   heads* over the window's real frames, softmax over time.
2. Standardise each head's weights over the tokens, median-filter them over time
   (width 7), average the heads: a ``(n_tokens + 1, n_frames)`` similarity matrix.
3. Dynamic time warping on its negative gives a monotonic path token -> frame; a
   word starts at the frame where the path enters its first token and ends where the
   path enters the next word.
4. A few corrections: a word much longer than the median word at a sentence end, or
   right after a pause, is shortened; punctuation joins its neighbouring word.

The alignment heads are checkpoint metadata: CTranslate2 and Hugging Face folders
list them; for OpenAI ``.pt`` files the published tables below are used (by the
model's shape), and any other model falls back to every head of the second half of
the decoder layers, as openai-whisper does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from s2s_models.audio import TOKENS_PER_SECOND
from s2s_models.whisper.model import Whisper
from s2s_models.whisper.tokenizer import WhisperTokenizer
from s2s_models.whisper.transcription import Word

# (layer, head) pairs published with the OpenAI checkpoints, keyed by
# (n_text_layer, n_text_head, n_vocab): tiny.en and base (multilingual).
PUBLISHED_ALIGNMENT_HEADS: dict[tuple[int, int, int], tuple[tuple[int, int], ...]] = {
    (4, 6, 51864): ((1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)),
    (6, 8, 51865): ((3, 1), (4, 2), (4, 3), (4, 7), (5, 1), (5, 2), (5, 4), (5, 6)),
}
MEDFILT_WIDTH = 7  # frames of the median filter over time
PREPEND_PUNCTUATION = "\"'“¿([{-"  # joins the word after it
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"  # joins the word before it
SENTENCE_END = ".。!！?？"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


@dataclass(frozen=True)
class WordTiming:
    """One word of a window, times in seconds from the window start."""

    word: str  # as decoded, with its leading space
    tokens: tuple[int, ...]
    start: float
    end: float
    probability: float  # mean probability of its tokens


def alignment_heads(model: Whisper) -> tuple[tuple[int, int], ...]:
    """The model's (layer, head) alignment heads: from its checkpoint when it named
    them, else the published table for its shape, else the second half of layers."""
    heads = getattr(model, "alignment_heads", None)
    if heads:
        return tuple(heads)
    dims = model.dims
    key = (dims.n_text_layer, dims.n_text_head, dims.n_vocab)
    if key in PUBLISHED_ALIGNMENT_HEADS:
        return PUBLISHED_ALIGNMENT_HEADS[key]
    first = dims.n_text_layer // 2
    return tuple(
        (layer, head)
        for layer in range(first, dims.n_text_layer)
        for head in range(dims.n_text_head)
    )


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through ``cost`` (n_rows, n_cols) from the top-left to
    the bottom-right corner, with steps down, right and diagonally down-right.

    Cells on one anti-diagonal depend only on the two before it, so each diagonal is
    one vectorised step. Returns the path's (row indices, column indices).
    """
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    # how each cell was reached: 0 diagonal, 1 from above, 2 from the left
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        options = np.stack(
            [total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]]
        )  # (3, cells)
        best = options.argmin(axis=0)
        total[i, j] = cost[i - 1, j - 1] + options[best, np.arange(len(i))]
        trace[i, j] = best
    rows, cols = [], []
    i, j = n, m
    while i > 0 and j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def median_filter(x: Tensor, width: int) -> Tensor:
    """Median over a sliding window of the last dimension (reflect-padded)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    flat = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    windows = flat.unfold(-1, width, 1)  # (rows, 1, n, width)
    return windows.median(dim=-1).values.reshape(shape)


def split_words(
    tokenizer: WhisperTokenizer, tokens: list[int], language: str = "en"
) -> tuple[list[str], list[list[int]]]:
    """Group text tokens into words: a word starts at a token whose text begins with
    a space, at a punctuation token, and at special tokens. Tokens that are parts of
    one UTF-8 character stay together. Languages written without spaces split into
    characters instead."""
    pieces: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for token in tokens:
        pending.append(token)
        text = tokenizer.tokenizer.decode(pending, skip_special_tokens=False)
        if token >= tokenizer.eot:
            text = tokenizer.tokenizer.id_to_token(token) or ""
        if "\ufffd" not in text:
            pieces.append((text, pending))
            pending = []
    if pending:
        pieces.append((tokenizer.tokenizer.decode(pending), pending))
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for text, ids in pieces:
        starts_word = (
            not words
            or language in NO_SPACE_LANGUAGES
            or ids[0] >= tokenizer.eot
            or text.startswith(" ")
            or text.strip() in APPEND_PUNCTUATION + PREPEND_PUNCTUATION
        )
        if starts_word:
            words.append(text)
            word_tokens.append(list(ids))
        else:
            words[-1] += text
            word_tokens[-1].extend(ids)
    return words, word_tokens


def _cross_attention(
    model: Whisper, tokens: Tensor, features: Tensor, heads
) -> tuple[Tensor, Tensor]:
    """Logits (batch, n_tok, n_vocab) and the alignment heads' pre-softmax
    cross-attention scores (batch, n_heads, n_tok, n_audio_ctx), in float32."""
    layers = sorted({layer for layer, _ in heads})
    scores: dict[int, Tensor] = {}

    def keep(layer: int):
        def hook(module, args, _output):
            h, (key, _value) = args[0], args[1]
            q = module._split(module.query(h))  # (batch, n_head, n_tok, head_dim)
            scale = q.shape[-1] ** -0.5
            scores[layer] = (q.float() @ key.float().transpose(-1, -2)) * scale

        return hook

    handles = [
        model.decoder.blocks[layer].cross_attn.register_forward_hook(keep(layer))
        for layer in layers
    ]
    try:
        logits = model.logits(tokens, features)
    finally:
        for handle in handles:
            handle.remove()
    stacked = torch.stack([scores[layer][:, head] for layer, head in heads], dim=1)
    return logits, stacked


@torch.inference_mode()
def align_words(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    features: Tensor,
    texts: list[list[int]],
    n_frames: list[int],
    language: str | list[str] = "en",
    task: str = "transcribe",
) -> list[list[WordTiming]]:
    """Word timings of each window's text tokens.

    Parameters
    ----------
    features
        ``(batch, n_audio_ctx, n_audio_state)`` encoder output of the windows.
    texts
        Per window, the decoded text tokens (timestamp and special tokens dropped).
    n_frames
        Per window, how many mel frames (100 per second) hold real audio.
    language
        The language of each window (one code for all, or a list).

    Returns
    -------
    list[list[WordTiming]]
        Per window, its words in order (empty for an empty text); times in seconds
        from the window start.
    """
    batch = len(texts)
    languages = [language] * batch if isinstance(language, str) else list(language)
    heads = alignment_heads(model)
    prefixes = [
        tokenizer.sot_sequence(lang if tokenizer.multilingual else None, task, True)
        for lang in languages
    ]
    rows = [p + list(t) + [tokenizer.eot] for p, t in zip(prefixes, texts, strict=True)]
    width = max(len(r) for r in rows)
    padded = torch.full((batch, width), tokenizer.eot, dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = torch.tensor(row)
    logits, scores = _cross_attention(
        model, padded.to(model.device), features[:batch], heads
    )
    out = []
    for i in range(batch):
        if not texts[i]:
            out.append([])
            continue
        n_prefix, n_text = len(prefixes[i]), len(texts[i])
        # rows that predict the text tokens and eot: the last prefix token onwards
        first, last = n_prefix - 1, n_prefix + n_text  # last is exclusive
        n_ctx = max(1, min(n_frames[i] // 2, scores.shape[-1]))
        weights = scores[i, :, first:last, :n_ctx].softmax(dim=-1)
        std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
        weights = median_filter((weights - mean) / std, MEDFILT_WIDTH)
        matrix = weights.mean(dim=0).cpu().double().numpy()  # (n_text + 1, n_ctx)
        text_probs = (
            logits[i, first : last - 1, : tokenizer.eot].softmax(dim=-1).cpu()
        )[torch.arange(n_text), torch.tensor(texts[i])].numpy()
        out.append(
            _words_from_path(tokenizer, texts[i], matrix, text_probs, languages[i])
        )
    return out


def _words_from_path(
    tokenizer: WhisperTokenizer,
    text: list[int],
    matrix: np.ndarray,
    text_probs: np.ndarray,
    language: str,
) -> list[WordTiming]:
    words, word_tokens = split_words(tokenizer, text + [tokenizer.eot], language)
    if len(word_tokens) <= 1:
        return []
    text_index, time_index = dtw(-matrix)
    # the frame where the path first reaches each token (n_text + 1 of them)
    jumps = np.diff(text_index, prepend=-1).astype(bool)
    jump_times = time_index[jumps] / TOKENS_PER_SECOND
    bounds = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens[:-1]])])
    starts = jump_times[bounds[:-1]]
    ends = jump_times[bounds[1:]]
    probs = [
        float(np.mean(text_probs[a:b]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    _shorten_sentence_ends(words, starts, ends)
    timings = [
        WordTiming(w, tuple(t), round(float(s), 3), round(float(e), 3), p)
        for w, t, s, e, p in zip(
            words[:-1], word_tokens[:-1], starts, ends, probs, strict=True
        )
    ]
    return merge_punctuation(timings)


def median_word_seconds(starts: np.ndarray, ends: np.ndarray) -> float:
    """Median of the non-zero word durations, at most 0.7 s (0 when none)."""
    durations = (ends - starts)[(ends - starts) > 0]
    return min(0.7, float(np.median(durations))) if len(durations) else 0.0


def _shorten_sentence_ends(words: list[str], starts, ends) -> None:
    """A word over twice the median length that ends or follows a sentence mostly
    spans the pause there: cut it to twice the median (in place)."""
    longest = 2 * median_word_seconds(starts, ends)
    if longest == 0:
        return
    for i in range(1, len(starts)):
        if ends[i] - starts[i] > longest:
            if words[i].strip() in SENTENCE_END:
                ends[i] = starts[i] + longest
            elif words[i - 1].strip() in SENTENCE_END:
                starts[i] = ends[i] - longest


def merge_punctuation(words: list[WordTiming]) -> list[WordTiming]:
    """Attach punctuation to its word: an opening mark written as a word of its own
    (" (") to the word after it, a closing mark ("," ".") to the word before it.
    The word keeps its own times and probability."""
    words = list(words)
    target = len(words) - 1  # the word that receives opening marks before it
    for i in range(len(words) - 2, -1, -1):
        mark = words[i]
        if mark.word.startswith(" ") and mark.word.strip() in PREPEND_PUNCTUATION:
            word = words[target]
            words[target] = replace(
                word, word=mark.word + word.word, tokens=mark.tokens + word.tokens
            )
            words[i] = replace(mark, word="", tokens=())
        else:
            target = i
    receiver = 0  # the word that receives closing marks after it
    for j in range(1, len(words)):
        word, mark = words[receiver], words[j]
        if not word.word.endswith(" ") and mark.word in APPEND_PUNCTUATION:
            words[receiver] = replace(
                word, word=word.word + mark.word, tokens=word.tokens + mark.tokens
            )
            words[j] = replace(mark, word="", tokens=())
        else:
            receiver = j
    return [w for w in words if w.word]


def words_in_recording(
    timings: list[WordTiming],
    to_recording: Callable[[float], float],
    last_speech_s: float = 0.0,
) -> list[Word]:
    """A window's word timings as :class:`Word` s in recording time.

    ``to_recording`` maps window seconds to recording seconds. openai-whisper's
    correction for the first word after a pause is applied: when it ends more than
    four median words after ``last_speech_s`` (the end of the speech before it) and
    is longer than two median words, it starts two median words before its end.
    """
    if not timings:
        return []
    starts = np.array([w.start for w in timings])
    ends = np.array([w.end for w in timings])
    median = median_word_seconds(starts, ends)
    longest = 2 * median
    words = [
        Word(w.word, round(to_recording(w.start), 3), round(to_recording(w.end), 3),
             round(w.probability, 4))
        for w in timings
    ]  # fmt: skip
    first = words[0]
    if (
        longest > 0
        and first.end_s - last_speech_s > 4 * median
        and first.end_s - first.start_s > longest
    ):
        words[0] = replace(first, start_s=round(max(0.0, first.end_s - longest), 3))
    return words
