"""Stages `tts_requests` (texts in, one checked row per utterance) and `mels`
(the log-mel of each utterance, from our SpeechT5 voice or a teacher engine).

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
  model handles; the chunks' mels are joined in order. A chunk whose audio is far
  shorter than its phonemes need is generated again with other seeds, and flagged
  `cut_short` (and counted as a stop failure) if it stays short;
* characters outside a SpeechT5 voice's vocabulary are normalised where possible
  (typographic quotes and dashes, letter case) and otherwise removed and listed
  in `unknown_chars`; the row still succeeds when something is left to say.

The `speaker` column is carried through as metadata: a SpeechT5 voice speaks with
the x-vector of `--speaker-embedding` (else the voice's own `speaker_embedding.npy`).

For teacher engines the `mels` stage stores the SpeechT5 log-mel of the engine's
own audio (so the dataset can train our model) and that audio, at 16 kHz, for the
`audio` stage.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import soxr
import torch
from prefect import task
from prefect.cache_policies import NONE

from s2s_models.device import resolve_device
from s2s_models.speecht5 import GenerationOptions
from s2s_models.speecht5.generation import generate_speech_checked
from s2s_models.speecht5.normalize import TextRefused, normalize_english
from s2s_models.speecht5.tokenizer import normalize_text, pad_batch
from s2s_models.vocoders import speecht5_log_mel
from tasks.ingest import encode_flac
from tasks.schemas import MELS, TTS_REQUESTS, float16_matrix_column
from tasks.stage import fingerprint, run_isolating_failures, write_part
from tasks.tts_engines import (
    load_speecht5_voice,
    load_teacher,
    speaker_tensor,
    speaks_english,
)

SAMPLE_RATE = 16000
N_MELS = 80
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


@dataclass(frozen=True)
class SynthesisOptions:
    engine: str = "speecht5"  # speecht5 | piper | espeak
    voice: str = "default"  # SpeechT5 voice folder / piper .onnx / espeak voice
    speaker_embedding: str | None = None  # .npy of 512 floats (speecht5)
    batch_size: int = 8  # chunks decoded together (speecht5)
    seed: int = 0  # prenet dropout seed: the same text gives the same mel
    threshold: float = 0.5  # stop-token threshold
    maxlenratio: float = 20.0  # decoder steps per text token before cutting

    def verify(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.generation().verify()

    def generation(self) -> GenerationOptions:
        return GenerationOptions(
            threshold=self.threshold, maxlenratio=self.maxlenratio, seed=self.seed
        )


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


def request_key(item: TextItem, options: TextOptions, engine_fp: str) -> str:
    return fingerprint("tts_requests", item.text, item.speaker, asdict(options),
                       engine_fp)  # fmt: skip


def normalize_request(text: str, tokenizer, english: bool) -> tuple[str, list[str]]:
    """What the engine will say, and the characters removed as unknown: the voice's
    own front end, else (a teacher) the English normaliser when the teacher speaks
    English. Raises TextRefused for text that is mostly markup."""
    if tokenizer is not None:
        return tokenizer.normalize_text(text)
    return (normalize_english(text), []) if english else normalize_text(text)


def _request_row(item: TextItem, key: str, tokenizer, max_chars, limit,
                 english: bool) -> dict:  # fmt: skip
    row = {"utt_id": item.utt_id, "input_key": key, "source": item.source,
           "text": item.text, "speaker": item.speaker, "status": "failed"}  # fmt: skip
    if item.error is not None:
        return {**row, "error": item.error}
    if not (item.text or "").strip():
        return {**row, "error": "empty text"}
    if len(item.text) > max_chars:
        return {**row, "error": f"text has {len(item.text)} characters, more than "
                f"max_chars={max_chars}: split it into shorter lines"}  # fmt: skip
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
    chunks = (split_sentences if tokenizer is None else sentence_chunks)(
        normalized, limit
    )
    if tokenizer is None:
        n_tokens = len(normalized) + len(chunks)
    else:
        n_tokens = sum(len(tokenizer.encode(c).ids) for c in chunks)
    return {**row, "normalized_text": normalized, "n_chars": len(normalized),
            "n_tokens": n_tokens, "n_chunks": len(chunks), "status": "ok",
            "error": None}  # fmt: skip


def compute_tts_requests(
    items: list[TextItem], keys: list[str], tokenizer, options: TextOptions, limit: int,
    english: bool = True,
) -> list[dict]:  # fmt: skip
    """Pure stage logic: one row per text (`tokenizer` None for teacher engines;
    `english`: a teacher given English-normalised text)."""
    options.verify()
    return [
        _request_row(item, key, tokenizer, options.max_chars, limit, english)
        for item, key in zip(items, keys, strict=True)
    ]


@task(name="tts-requests-shard", cache_policy=NONE, retries=1, retry_delay_seconds=2)
def tts_requests_shard(
    run_dir: str, part_index: int, items: list[dict], keys: list[str],
    text_options: dict, synthesis: dict,
) -> str:  # fmt: skip
    """Check and normalise one shard of texts; write one tts_requests part."""
    opts, synth = TextOptions(**text_options), SynthesisOptions(**synthesis)
    tokenizer, english = None, True
    if synth.engine == "speecht5":
        tokenizer = load_speecht5_voice(synth.voice).tokenizer
    else:
        english = speaks_english(synth.engine, synth.voice)
    rows = compute_tts_requests(
        [TextItem(**it) for it in items], keys, tokenizer, opts,
        chunk_limit(opts, synth), english,
    )  # fmt: skip
    out = pa.Table.from_pylist(rows, schema=TTS_REQUESTS)
    return str(write_part(run_dir, "tts_requests", part_index, out))


# ---------------------------------------------------------------- mels


def mel_key(request_key_: str, engine_fp: str, synthesis: SynthesisOptions,
            limit: int) -> str:  # fmt: skip
    settings = asdict(synthesis)
    settings.pop("batch_size")  # batching never changes an utterance's mel
    return fingerprint("mels", request_key_, engine_fp, settings, limit)


# Fewest seconds a phoneme (or letter) plausibly takes: speech at 12-15 phonemes per
# second is about 0.07 s each; an utterance that stops at under 0.045 s per unit is
# cut short (the first default voice stopping after "Dr." of a 42-phoneme sentence
# gave 0.033 s per phoneme).
MIN_SECONDS_PER_UNIT = 0.045
FRAMES_PER_SECOND = SAMPLE_RATE / 256  # SpeechT5 mel hop


def min_frames(tokenizer, ids: list[int]) -> int:
    """Fewest frames the text of ``ids`` plausibly needs (0 when the tokenizer
    cannot count phonemes: the published character voices)."""
    count = getattr(tokenizer, "count_units", None)
    if count is None:
        return 0
    return int(count(ids) * MIN_SECONDS_PER_UNIT * FRAMES_PER_SECOND)


def _generate_batch(voice, texts: list[str], speaker, options) -> list[tuple]:
    """(mel, stopped, cut_short) per text."""
    device = voice.model.feat_out.weight.device
    encoded = [voice.tokenizer.encode(t) for t in texts]
    enc = pad_batch(encoded, voice.tokenizer.pad_id)
    if speaker is not None:
        speaker = speaker.to(device)
    result = generate_speech_checked(
        voice.model, enc.input_ids.to(device), enc.attention_mask.to(device),
        speaker, options.generation(),
        [min_frames(voice.tokenizer, e.ids) for e in encoded],
    )  # fmt: skip
    mels = [m.float().cpu().numpy() for m in result.mels]
    return list(zip(mels, result.stopped, result.cut_short, strict=True))


def compute_mels_speecht5(
    voice, rows: list[dict], synthesis: SynthesisOptions, limit: int
) -> list[dict]:
    """Generate every chunk of every row in length-sorted batches, then join each
    row's chunks. A batch that raises is redone item by item, so one bad chunk
    fails only its own utterance. Compute time is shared out by frames."""
    speaker = speaker_tensor(voice, synthesis.speaker_embedding)
    pieces = [(i, c) for i, r in enumerate(rows)
              for c in sentence_chunks(r["normalized_text"], limit)]  # fmt: skip
    order = sorted(range(len(pieces)), key=lambda p: len(pieces[p][1]))
    mels: list = [None] * len(pieces)
    stops: list = [None] * len(pieces)  # (stopped, cut_short) per chunk
    errors: list = [None] * len(pieces)
    seconds = [0.0] * len(pieces)

    def generate(batch: list[int]) -> list[tuple]:  # (mel, stopped, cut_short)
        return _generate_batch(voice, [pieces[p][1] for p in batch], speaker, synthesis)

    for start in range(0, len(order), synthesis.batch_size):
        batch = order[start : start + synthesis.batch_size]
        t0 = time.perf_counter()
        outcomes = run_isolating_failures(generate, batch)
        results = []
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                errors[p] = f"{type(outcome).__name__}: {outcome}"
            else:
                results.append((p, outcome[0], outcome[1:]))
        wall = time.perf_counter() - t0
        frames = sum(m.shape[0] for _, m, _ in results) or 1
        for p, m, s in results:
            mels[p], stops[p], seconds[p] = m, s, wall * m.shape[0] / frames
    return [_join_chunks(row, i, pieces, mels, stops, errors, seconds)
            for i, row in enumerate(rows)]  # fmt: skip


def _join_chunks(row, i, pieces, mels, stops, errors, seconds) -> dict:
    mine = [p for p, (owner, _) in enumerate(pieces) if owner == i]
    failed = [errors[p] for p in mine if errors[p] is not None]
    if failed:
        return _mel_failed(row, f"chunk failed: {failed[0]}")
    mel = np.concatenate([mels[p] for p in mine])  # (n_frames, n_mels)
    stopped = all(stops[p][0] for p in mine)
    cut_short = any(stops[p][1] for p in mine)
    return _mel_row(row, mel, stopped, None, sum(seconds[p] for p in mine), cut_short)


def compute_mels_teacher(engine, rows: list[dict]) -> list[dict]:
    """Synthesize each row with a teacher; keep its 16 kHz audio and its SpeechT5
    log-mel. Teachers always end on their own: stopped=True."""
    out = []
    for row in rows:
        t0 = time.perf_counter()
        try:
            audio = engine.synthesize(row["normalized_text"])
            if audio.size == 0:
                raise RuntimeError("the engine produced no audio")
            audio16 = soxr.resample(audio, engine.sample_rate, SAMPLE_RATE)
            audio16 = np.clip(audio16, -1.0, 1.0).astype(np.float32)
            mel = speecht5_log_mel(audio16).numpy()  # (n_frames, 80)
            flac = {"bytes": encode_flac(audio16, SAMPLE_RATE),
                    "path": f"{row['utt_id']}.flac"}  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one bad item is a failed row
            out.append(_mel_failed(row, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(_mel_row(row, mel, True, flac, time.perf_counter() - t0))
    return out


def _mel_row(row, mel, stopped, engine_audio, seconds, cut_short=False) -> dict:
    return {**row, "n_mels": int(mel.shape[1]), "n_frames": int(mel.shape[0]),
            "log_mel": mel.astype(np.float16), "stopped": bool(stopped),
            "hit_max_length": not stopped, "cut_short": bool(cut_short),
            "engine_audio": engine_audio,
            "synth_seconds": float(seconds), "status": "ok", "error": None}  # fmt: skip


def _mel_failed(row, error: str) -> dict:
    return {**row, "log_mel": None, "status": "failed", "error": error}


def read_mel(column: pa.ListArray, i: int) -> np.ndarray:
    """Row `i` of a list<list<float16>> column as a (n_frames, n_mels) float32."""
    rows = column[i].values  # one list per frame
    return rows.flatten().to_numpy().astype(np.float32).reshape(len(rows), -1)


@task(name="mels-shard", cache_policy=NONE, retries=1, retry_delay_seconds=2)
def mels_shard(
    run_dir: str, part_index: int, upstream_part: str, utt_ids: list[str],
    synthesis: dict, engine_fp: str, limit: int, device: str = "auto",
) -> str:  # fmt: skip
    """Synthesize `utt_ids` of one tts_requests part on `device` (SpeechT5; teachers
    run on the CPU); write one mels part."""
    synth = SynthesisOptions(**synthesis)
    wanted = set(utt_ids)
    cols = ["utt_id", "input_key", "text", "normalized_text", "speaker"]
    rows = [r for r in pq.read_table(upstream_part, columns=cols).to_pylist()
            if r["utt_id"] in wanted]  # fmt: skip
    for r in rows:
        r["input_key"] = mel_key(r["input_key"], engine_fp, synth, limit)
        r["engine"] = synth.engine
    with torch.inference_mode():
        if synth.engine == "speecht5":
            voice = load_speecht5_voice(synth.voice)
            voice.model.to(resolve_device(device))  # the cached voice moves once
            out_rows = compute_mels_speecht5(voice, rows, synth, limit)
        else:
            out_rows = compute_mels_teacher(
                load_teacher(synth.engine, synth.voice), rows
            )
    mels = [r.pop("log_mel") for r in out_rows]
    schema = MELS.remove(MELS.get_field_index("log_mel"))
    table = pa.Table.from_pylist(out_rows, schema=schema)
    table = table.append_column(MELS.field("log_mel"), float16_matrix_column(mels))
    return str(write_part(run_dir, "mels", part_index, table))
