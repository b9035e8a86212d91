"""Training data for our SpeechT5-architecture voices, from a TTS dataset run folder.

A dataset is the RUN_DIR of ``s2s synthesize`` (any engine): its ``audio`` stage holds
text and FLAC per utterance. ``load_training_set`` turns every ok row into token ids
(the voice's phoneme front end) and a log-mel under the voice's mel definition
(``s2s_models.vocoders.mels``: ``speecht5-16k`` needs 16 kHz audio, ``hifigan-22k``
22,050 Hz audio, i.e. a teacher run made with ``--mel hifigan-22k``), and caches the
result in ``CKPT_DIR/training_data.parquet`` keyed by the dataset's parts, so resuming
a run does not recompute mels.

Held-out texts are removed here (compared after normalisation), whatever the dataset
holds, so an evaluation sentence is never trained on. Ids are made from the row's
``normalized_text`` when it has one: the words the teacher was actually asked to say.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from s2s_models.speecht5.phonemes import PhonemeTokenizer
from s2s_models.vocoders.mels import SPEECHT5_16K, MelDefinition, log_mel
from tasks.codecs import decode_flac
from tasks.stage import fingerprint, list_parts
from tasks.tts.audio import AUDIO
from tasks.tts.mels import TTS_MEL

CACHE_FILE = "training_data.parquet"
CACHE_LAYOUT = 2  # 2: mels as TTS_MEL blobs (1: list<list<float16>>)


@dataclass
class TrainingSet:
    utt_ids: list[str]
    texts: list[str]
    ids: list[list[int]]
    mels: list[torch.Tensor]  # (n_frames, 80) float16
    key: str  # fingerprint of the dataset parts + front end
    mel: MelDefinition = SPEECHT5_16K

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def seconds(self) -> float:
        return sum(m.shape[0] for m in self.mels) / self.mel.frames_per_second


def dataset_parts(dataset: str | Path) -> list[Path]:
    parts = list_parts(dataset, AUDIO)
    if not parts:
        raise FileNotFoundError(
            f"{dataset}: no audio/part-*.parquet; give the RUN_DIR of an "
            "`s2s synthesize` run (for example with --engine piper)"
        )
    return parts


def dataset_key(
    dataset: str | Path, tokenizer: PhonemeTokenizer, mel: MelDefinition = SPEECHT5_16K
) -> str:
    parts = dataset_parts(dataset)
    # SpeechT5's mel keeps its old name so that existing caches stay valid
    mel_name = "speecht5-log-mel-v1" if mel == SPEECHT5_16K else mel.to_dict()
    return fingerprint(
        [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in parts],
        tokenizer.symbols,
        tokenizer.name,
        mel_name,
    )


def _normalized(text: str, tokenizer: PhonemeTokenizer) -> str:
    return tokenizer.normalize_text(text)[0].lower()


def _read_cache(path: Path, key: str, mel: MelDefinition) -> TrainingSet | None:
    if not path.exists():
        return None
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if meta.get(b"s2s.key", b"").decode() != key:
        return None
    mels = [
        torch.from_numpy(TTS_MEL.read(row).copy())
        for row in table.select(list(TTS_MEL.columns)).to_pylist()
    ]
    return TrainingSet(
        table.column("utt_id").to_pylist(),
        table.column("text").to_pylist(),
        table.column("ids").to_pylist(),
        mels,
        key,
        mel,
    )


def _write_cache(path: Path, data: TrainingSet) -> None:
    columns = {
        "utt_id": pa.array(data.utt_ids, pa.string()),
        "text": pa.array(data.texts, pa.string()),
        "ids": pa.array(data.ids, pa.list_(pa.int16())),
    }
    cells = [TTS_MEL.cells(mel.numpy()) for mel in data.mels]
    for name in TTS_MEL.columns:
        columns[name] = pa.array([c[name] for c in cells])
    table = pa.table(columns).replace_schema_metadata({"s2s.key": data.key})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def load_training_set(
    dataset: str | Path,
    tokenizer: PhonemeTokenizer,
    heldout_texts: list[str],
    cache_dir: str | Path,
    max_seconds: float = 12.0,
    mel: MelDefinition = SPEECHT5_16K,
) -> tuple[TrainingSet, dict]:
    """Every ok, non-held-out utterance of ``dataset`` up to ``max_seconds`` long,
    with its log-mel under ``mel``.

    Returns the set and counts of what was dropped and why."""
    key = fingerprint(
        dataset_key(dataset, tokenizer, mel),
        sorted(heldout_texts),
        max_seconds,
        CACHE_LAYOUT,
    )
    cache = Path(cache_dir) / CACHE_FILE
    cached = _read_cache(cache, key, mel)
    if cached is not None:
        return cached, {"cached": True, "kept": len(cached)}
    heldout = {_normalized(t, tokenizer) for t in heldout_texts}
    counts = {"failed": 0, "heldout": 0, "too_long": 0, "kept": 0}
    data = TrainingSet([], [], [], [], key, mel)
    columns = ["utt_id", "text", "normalized_text", "audio", "sampling_rate", "status"]
    for part in dataset_parts(dataset):
        for row in pq.read_table(part, columns=columns).to_pylist():
            if row["status"] != "ok" or row["audio"] is None:
                counts["failed"] += 1
                continue
            if _normalized(row["text"], tokenizer) in heldout:
                counts["heldout"] += 1
                continue
            audio, rate = decode_flac(row["audio"]["bytes"])
            if rate != mel.sample_rate:
                raise ValueError(
                    f"{row['utt_id']}: audio at {rate} Hz, but the {mel.name} mel "
                    f"needs {mel.sample_rate} Hz: make the dataset with `s2s "
                    f"synthesize ... --mel {mel.name}`"
                )
            if len(audio) / rate > max_seconds:
                counts["too_long"] += 1
                continue
            data.utt_ids.append(row["utt_id"])
            data.texts.append(row["text"])
            spoken = row["normalized_text"] or row["text"]
            data.ids.append(tokenizer.encode(spoken).ids)
            data.mels.append(log_mel(audio, mel).to(torch.float16))
    counts["kept"] = len(data)
    if not data.utt_ids:
        raise ValueError(f"{dataset}: no usable utterances ({json.dumps(counts)})")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    _write_cache(cache, data)
    return data, counts


def length_buckets(
    n_frames: list[int], frames_per_batch: int, max_batch: int, seed: int, epoch: int
) -> list[list[int]]:
    """Batches of similar length, each with at most ``frames_per_batch`` padded frames,
    in a seeded random order that depends on the epoch (so a resumed run sees the
    same batches)."""
    rng = random.Random(seed * 100_003 + epoch)
    order = sorted(range(len(n_frames)), key=lambda i: (n_frames[i], rng.random()))
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, n_frames[i])
        if current and (
            longest_if * (len(current) + 1) > frames_per_batch
            or len(current) >= max_batch
        ):
            batches.append(current)
            current, longest_if = [], n_frames[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches
