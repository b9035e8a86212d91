"""Stage `tts_requests`: texts in, one checked row per utterance.

Texts come from .txt (one per line; blank lines are separators and are skipped),
.csv, .jsonl or .parquet (column `text`, optional `utt_id` and `speaker`). A text
that cannot be used becomes a failed row with the reason; nothing else is lost:

* bytes that are not UTF-8 (a txt line, a CSV cell, a JSONL line) fail that row;
* empty text, or text with nothing left after normalisation, fails;
* text longer than `max_chars` characters is refused (a dataset utterance is a
  sentence or a paragraph, not a chapter: split such text into lines yourself);
* text is normalised into the words to say (`normalized_text`, what the engine is
  asked to say): by the voice's own front end for a SpeechT5 voice (our
  `en-arpabet-v2` voices expand numbers, dates, money, abbreviations, acronyms,
  URLs and strip markup: `s2s_models.speecht5.normalize`), by the same English
  normaliser for an English teacher voice; text that is mostly markup fails;
* a SpeechT5 voice says each sentence as its own chunk (a period inside a chunk
  could end it early), cut further at commas, then spaces, when longer than the
  model handles (the `mels` stage joins the chunks' mels in order);
* characters outside a SpeechT5 voice's vocabulary are normalised where possible
  (typographic quotes and dashes, letter case) and otherwise removed and listed
  in `unknown_chars`; the row still succeeds when something is left to say.

The `speaker` column is carried through as metadata: a SpeechT5 voice speaks with
the x-vector of `--speaker-embedding` (else the voice's own `speaker_embedding.npy`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from s2s_models.speecht5.normalize import TextRefused, normalize_english
from s2s_models.speecht5.tokenizer import normalize_text
from tasks.stage import ROW_STATUS, StageSpec, fingerprint
from tasks.stage.plan import StagePlan, chunked, done_rows, is_done
from tasks.tts.engines import (
    SynthesisOptions,
    load_speecht5_voice,
    load_tokenizer,
    speaks_english,
)

TEXT_EXTENSIONS = (".txt", ".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class TextItem:
    utt_id: str
    text: str | None  # None when it could not be read
    speaker: str | None
    source: str  # file:line or file:row
    error: str | None = None


@dataclass(frozen=True)
class TextOptions:
    # longest text accepted, characters before normalisation
    max_chars: int = 1000
    # longest chunk synthesized at once (SpeechT5 also caps it at its positions)
    max_chunk_chars: int = 300

    def verify(self) -> None:
        if self.max_chunk_chars < 20 or self.max_chars < self.max_chunk_chars:
            raise ValueError("need 20 <= max_chunk_chars <= max_chars")


# ---------------------------------------------------------------- reading texts


def _txt_items(path: Path) -> list[TextItem]:
    items = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        utt_id, source = f"{path.stem}-{lineno:05d}", f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8").lstrip("\ufeff").strip()
        except UnicodeDecodeError as exc:
            error = (
                f"line {lineno} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            )
            items.append(TextItem(utt_id, None, None, source, error))
            continue
        if line:
            items.append(TextItem(utt_id, line, None, source))
    return items


def _table_rows(path: Path) -> list[tuple[dict | None, str | None]]:
    """(row, error) pairs; JSONL lines and CSV cells that are not UTF-8 fail alone."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                rows.append((json.loads(raw.decode("utf-8")), None))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                rows.append((None, f"line {lineno}: {type(exc).__name__}: {exc}"))
        return rows
    if suffix == ".csv":
        # surrogateescape keeps undecodable bytes visible per cell (see _table_items)
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
        return [(row, None) for row in csv.DictReader(io.StringIO(text))]
    frame = pd.read_parquet(path)
    return [(row, None) for row in frame.to_dict("records")]


def _cell(row: dict, key: str) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value) if str(value) != "" else None


def _printable(value: str | None) -> str | None:
    """Undecodable bytes (kept as surrogates) of an id or speaker become '?'."""
    return None if value is None else value.encode("utf-8", "replace").decode()


def _table_items(path: Path) -> list[TextItem]:
    items = []
    for i, (row, error) in enumerate(_table_rows(path)):
        row = row if isinstance(row, dict) else {}
        if error is None and "text" not in row:
            raise ValueError(f"{path}: no 'text' column/key (row {i})")
        utt_id = _printable(_cell(row, "utt_id")) or f"{path.stem}-{i:05d}"
        text, speaker = _cell(row, "text"), _printable(_cell(row, "speaker"))
        if text is not None and re.search("[\udc80-\udcff]", text):
            text, error = None, f"row {i}: text is not valid UTF-8"
        items.append(TextItem(utt_id, text, speaker, f"{path}:{i}", error))
    return items


def read_texts(inputs: list[str]) -> list[TextItem]:
    """Every text of every input file, in order; duplicate utt_ids fail."""
    items: list[TextItem] = []
    for name in inputs:
        path = Path(name)
        if path.suffix.lower() not in TEXT_EXTENSIONS:
            raise ValueError(f"{name}: expected one of {TEXT_EXTENSIONS}")
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such file")
        items += (
            _txt_items(path) if path.suffix.lower() == ".txt" else _table_items(path)
        )
    seen: dict[str, int] = {}
    out = []
    for item in items:
        n = seen[item.utt_id] = seen.get(item.utt_id, 0) + 1
        if n > 1:
            error = f"duplicate utt_id {item.utt_id!r}"
            item = TextItem(
                f"{item.utt_id}#dup{n}", item.text, item.speaker, item.source, error
            )
        out.append(item)
    return out


# ---------------------------------------------------------------- tts_requests


def sentence_chunks(text: str, max_chars: int) -> list[str]:
    """One chunk per sentence, each cut further by `split_sentences` when longer
    than `max_chars`."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return [c for s in sentences if s for c in split_sentences(s, max_chars)]


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Chunks of at most `max_chars`, cut after sentence ends, else after commas,
    semicolons or colons, else at spaces, else anywhere."""
    if len(text) <= max_chars:
        return [text]
    for pattern in (r"(?<=[.!?])\s+", r"(?<=[,;:])\s+", r"\s+"):
        pieces = re.split(pattern, text)
        if len(pieces) > 1:
            break
    else:
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    chunks, current = [], ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if len(joined) <= max_chars:
            current = joined
            continue
        if current:
            chunks.append(current)
        current = piece
    chunks.append(current)
    return [c for chunk in chunks for c in split_sentences(chunk, max_chars)]


def chunk_limit(options: TextOptions, synthesis: SynthesisOptions) -> int:
    """Longest chunk for the engine: SpeechT5 has max_text_positions (</s> too)."""
    if synthesis.engine != "speecht5":
        return options.max_chunk_chars
    dims = load_speecht5_voice(synthesis.voice).model.dims
    return max(1, min(options.max_chunk_chars, dims.max_text_positions - 1))


@dataclass(frozen=True)
class TtsRequestsParams:
    """What the tts_requests stage runs with (`requests_params` builds it)."""

    text: TextOptions
    synthesis: SynthesisOptions  # the engine and voice decide the vocabulary
    engine_fp: str  # `engine_fingerprint` of the engine and voice
    limit: int  # longest chunk: `chunk_limit`


def request_key(item: TextItem, options: TextOptions, engine_fp: str) -> str:
    return fingerprint(
        TTS_REQUESTS.name, item.text, item.speaker, asdict(options), engine_fp
    )


def normalize_request(text: str, tokenizer, english: bool) -> tuple[str, list[str]]:
    """What the engine will say, and the characters removed as unknown: the voice's
    own front end, else (a teacher) the English normaliser when the teacher speaks
    English. Raises TextRefused for text that is mostly markup."""
    if tokenizer is not None:
        return tokenizer.normalize_text(text)
    return (normalize_english(text), []) if english else normalize_text(text)


def _request_row(
    item: TextItem, key: str, tokenizer, max_chars: int, limit: int, english: bool
) -> dict:
    row = {
        "utt_id": item.utt_id,
        "input_key": key,
        "source": item.source,
        "text": item.text,
        "speaker": item.speaker,
        "status": "failed",
    }
    if item.error is not None:
        return {**row, "error": item.error}
    if not (item.text or "").strip():
        return {**row, "error": "empty text"}
    if len(item.text) > max_chars:
        return {
            **row,
            "error": f"text has {len(item.text)} characters, more than "
            f"max_chars={max_chars}: split it into shorter lines",
        }
    try:
        normalized, unknown = normalize_request(item.text, tokenizer, english)
    except TextRefused as exc:
        return {**row, "error": f"text refused: {exc}"}
    row["unknown_chars"] = unknown
    if not normalized:
        return {
            **row,
            "error": "nothing left to say after normalisation"
            + (f" (unknown characters {''.join(unknown)!r})" if unknown else ""),
        }
    split = split_sentences if tokenizer is None else sentence_chunks
    chunks = split(normalized, limit)
    if tokenizer is None:
        n_tokens = len(normalized) + len(chunks)
    else:
        n_tokens = sum(len(tokenizer.encode(c).ids) for c in chunks)
    return {
        **row,
        "normalized_text": normalized,
        "n_chars": len(normalized),
        "n_tokens": n_tokens,
        "n_chunks": len(chunks),
        "status": "ok",
        "error": None,
    }


def request_rows(
    rows: Iterable[dict], tokenizer, english: bool, options: TextOptions, limit: int
) -> list[dict]:
    """One checked row per keyed text item (`keyed_item`). `tokenizer`: the SpeechT5
    voice's, whose front end normalises the text; None for a teacher, which gets
    the text through the English normaliser when `english`, else as it is."""
    options.verify()
    out = []
    for row in rows:
        item = TextItem(**{k: v for k, v in row.items() if k != "input_key"})
        key = row["input_key"]
        out.append(
            _request_row(item, key, tokenizer, options.max_chars, limit, english)
        )
    return out


def compute_tts_requests(rows: Iterable[dict], params: TtsRequestsParams) -> list[dict]:
    """Pure stage logic: `request_rows` with the engine's tokenizer (SpeechT5) or
    language (teachers)."""
    synthesis = params.synthesis
    tokenizer, english = None, True
    if synthesis.engine == "speecht5":
        tokenizer = load_tokenizer(synthesis.voice)
    else:
        english = speaks_english(synthesis.engine, synthesis.voice)
    return request_rows(rows, tokenizer, english, params.text, params.limit)


def keyed_item(item: TextItem, key: str) -> dict:
    """A shard's input row: the text item's fields and its key."""
    return {**asdict(item), "input_key": key}


def plan_requests(
    run_dir: str,
    inputs: list[str],
    params: TtsRequestsParams,
    shard_size: int,
    retry_failed: bool = False,
) -> StagePlan:
    """Read every text of `inputs` and decide which still need a request row."""
    items = read_texts(inputs)
    done = done_rows(run_dir, TTS_REQUESTS)
    wanted, todo = {}, []
    for item in items:
        key = request_key(item, params.text, params.engine_fp)
        wanted[item.utt_id] = key
        if not is_done(done.get(item.utt_id), key, retry_failed):
            todo.append(keyed_item(item, key))
    shards = chunked(todo, shard_size)
    return StagePlan(shards, [len(s) for s in shards], wanted, len(todo))


TTS_REQUESTS = StageSpec(
    name="tts_requests",
    version=1,
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),  # text, speaker, source and text settings
        ("source", pa.string()),  # input file (and line or row) the text came from
        ("text", pa.string()),  # as given (null when it could not be decoded)
        ("normalized_text", pa.string()),  # what the engine is asked to say
        ("n_chars", pa.int32()),  # characters of normalized_text
        ("n_tokens", pa.int32()),  # SpeechT5 character tokens, </s> included
        ("n_chunks", pa.int32()),  # sentence chunks it is synthesized in
        ("unknown_chars", pa.list_(pa.string())),  # removed: not in the vocabulary
        ("speaker", pa.string()),
        *ROW_STATUS,
    ),
    compute=compute_tts_requests,
    plan=plan_requests,
    unit="text",
)
