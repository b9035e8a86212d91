"""Stage `mels`: the log-mel of each utterance, from our SpeechT5 voice or a
teacher engine.

A SpeechT5 voice generates every sentence chunk of every request in length-sorted
batches and the chunks' mels are joined in order. A chunk whose audio is far
shorter than its phonemes need is generated again with other seeds, and flagged
`cut_short` (and counted as a stop failure) if it stays short. For teacher engines
the stage stores the log-mel of the engine's own audio under the run's mel
definition (so the dataset can train our model) and that audio, at the definition's
rate (16 kHz for ``speecht5-16k``, 22,050 Hz for ``hifigan-22k``), for the `audio`
stage. Each row names its mel definition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa
import soxr
import torch

from s2s_models.device import resolve_device
from s2s_models.speecht5.generation import generate_speech_checked
from s2s_models.speecht5.tokenizer import pad_batch
from s2s_models.vocoders.mels import MelDefinition, get_mel_definition, log_mel
from tasks.codecs import AUDIO_STRUCT, MelBlob, audio_cell
from tasks.stage import (
    ROW_STATUS,
    StageSpec,
    error_text,
    failed_row,
    fingerprint,
    run_isolating_failures,
)
from tasks.tts.engines import (
    SynthesisOptions,
    load_speecht5_voice,
    load_teacher,
    speaker_tensor,
)
from tasks.tts.requests import TTS_REQUESTS, sentence_chunks

# What every TTS stage after tts_requests carries on, row by row.
TEXT_COLUMNS = (
    ("utt_id", pa.string()),
    ("input_key", pa.string()),
    ("text", pa.string()),
    ("normalized_text", pa.string()),
    ("speaker", pa.string()),
)
# (n_frames, n_mels) log-mel, frame-major (as SpeechT5 predicts and trains on it),
# under the row's mel definition (column `mel`, s2s_models.vocoders.mels).
TTS_MEL = MelBlob("log_mel", ("n_frames", "n_mels"))
HOP_LENGTH = 256  # samples per mel frame, in both mel definitions
# Fewest seconds a phoneme (or letter) plausibly takes: speech at 12-15 phonemes per
# second is about 0.07 s each; an utterance that stops at under 0.045 s per unit is
# cut short (the first default voice stopping after "Dr." of a 42-phoneme sentence
# gave 0.033 s per phoneme).
MIN_SECONDS_PER_UNIT = 0.045


@dataclass(frozen=True)
class MelsParams:
    """What the mels stage runs with."""

    synthesis: SynthesisOptions
    engine_fp: str  # `engine_fingerprint` of the engine and voice
    limit: int  # longest sentence chunk (`chunk_limit`)
    device: str = "auto"  # SpeechT5 generation; teachers run on the CPU
    # (request input_key, seed) of the items sampled with a seed other than
    # synthesis.seed: a reviewer rejected them, or their round trip failed
    # (`tasks.tts.attempts`). Keyed by request, so identical texts share a seed.
    item_seeds: tuple[tuple[str, int], ...] = ()
    mel: str = "speecht5-16k"  # the run's mel definition (`engines.run_mel`)


def item_seed(request_key: str, params: MelsParams) -> int:
    return dict(params.item_seeds).get(request_key, params.synthesis.seed)


def mel_key(request_key: str, params: MelsParams) -> str:
    settings = asdict(params.synthesis)
    settings.pop("batch_size")  # batching never changes an utterance's mel
    settings["seed"] = item_seed(request_key, params)
    return fingerprint(
        MELS.name, request_key, params.engine_fp, settings, params.limit, params.mel
    )


def seeds_by_mel_key(params: MelsParams) -> dict[str, int]:
    """mel input_key -> seed of the items with their own seed (a shard's rows
    carry their mel key, no longer the request key)."""
    return {mel_key(k, params): s for k, s in params.item_seeds}


def min_frames(tokenizer, ids: list[int], frames_per_second: float) -> int:
    """Fewest frames the text of ``ids`` plausibly needs (0 when the tokenizer
    cannot count phonemes: the published character voices)."""
    count = getattr(tokenizer, "count_units", None)
    if count is None:
        return 0
    return int(count(ids) * MIN_SECONDS_PER_UNIT * frames_per_second)


def _generate_batch(voice, texts: list[str], speaker, options) -> list[tuple]:
    """(mel, stopped, cut_short) per text."""
    device = voice.model.feat_out.weight.device
    encoded = [voice.tokenizer.encode(t) for t in texts]
    enc = pad_batch(encoded, voice.tokenizer.pad_id)
    if speaker is not None:
        speaker = speaker.to(device)
    result = generate_speech_checked(
        voice.model,
        enc.input_ids.to(device),
        enc.attention_mask.to(device),
        speaker,
        options.generation(),
        [
            min_frames(voice.tokenizer, e.ids, voice.mel.frames_per_second)
            for e in encoded
        ],
    )
    mels = [m.float().cpu().numpy() for m in result.mels]
    return list(zip(mels, result.stopped, result.cut_short, strict=True))


def _seed_batches(seeds: list[int], lengths: list[int], size: int) -> list[list[int]]:
    """Piece indices in batches of at most `size`, each of one seed (a batch
    shares its dropout masks), length-sorted within a seed."""
    order = sorted(range(len(seeds)), key=lambda p: (seeds[p], lengths[p]))
    batches: list[list[int]] = []
    for p in order:
        if batches and len(batches[-1]) < size and seeds[batches[-1][0]] == seeds[p]:
            batches[-1].append(p)
        else:
            batches.append([p])
    return batches


def compute_mels_speecht5(
    voice, rows: list[dict], synthesis: SynthesisOptions, limit: int
) -> list[dict]:
    """Generate every chunk of every row in length-sorted batches of one seed
    (a row's `seed`), then join each row's chunks. A batch that raises is redone
    item by item, so one bad chunk fails only its own utterance. Compute time is
    shared out by frames."""
    speaker = speaker_tensor(voice, synthesis.speaker_embedding)
    pieces = [
        (i, chunk)
        for i, row in enumerate(rows)
        for chunk in sentence_chunks(row["normalized_text"], limit)
    ]
    seeds = [rows[i].get("seed", synthesis.seed) for i, _ in pieces]
    mels: list = [None] * len(pieces)
    stops: list = [None] * len(pieces)  # (stopped, cut_short) per chunk
    errors: list = [None] * len(pieces)
    seconds = [0.0] * len(pieces)

    def generate(batch: list[int]) -> list[tuple]:  # (mel, stopped, cut_short)
        options = replace(synthesis, seed=seeds[batch[0]])
        return _generate_batch(voice, [pieces[p][1] for p in batch], speaker, options)

    lengths = [len(chunk) for _, chunk in pieces]
    for batch in _seed_batches(seeds, lengths, synthesis.batch_size):
        t0 = time.perf_counter()
        outcomes = run_isolating_failures(generate, batch)
        results = []
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                errors[p] = error_text(outcome)
            else:
                results.append((p, outcome[0], outcome[1:]))
        wall = time.perf_counter() - t0
        frames = sum(m.shape[0] for _, m, _ in results) or 1
        for p, m, s in results:
            mels[p], stops[p], seconds[p] = m, s, wall * m.shape[0] / frames
    out = []
    for i, row in enumerate(rows):
        mine = [p for p, (owner, _) in enumerate(pieces) if owner == i]
        failed = [errors[p] for p in mine if errors[p] is not None]
        if failed:
            out.append(failed_row(row, f"chunk failed: {failed[0]}"))
            continue
        mel = np.concatenate([mels[p] for p in mine])  # (n_frames, n_mels)
        stopped = all(stops[p][0] for p in mine)
        cut_short = any(stops[p][1] for p in mine)
        seconds_ = sum(seconds[p] for p in mine)
        out.append(_mel_row(row, mel, stopped, None, seconds_, cut_short))
    return out


def compute_mels_teacher(
    engine, rows: list[dict], definition: MelDefinition
) -> list[dict]:
    """Synthesize each row with a teacher; keep its audio at the definition's rate
    and its log-mel. Teachers always end on their own: stopped=True."""
    out = []
    rate = definition.sample_rate
    for row in rows:
        t0 = time.perf_counter()
        try:
            audio = engine.synthesize(row["normalized_text"])
            if audio.size == 0:
                raise RuntimeError("the engine produced no audio")
            if engine.sample_rate != rate:
                audio = soxr.resample(audio, engine.sample_rate, rate)
            audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
            mel = log_mel(audio, definition).numpy()  # (n_frames, 80)
            flac = audio_cell(audio, rate, row["utt_id"])
        except Exception as exc:  # noqa: BLE001 - one bad item is a failed row
            out.append(failed_row(row, error_text(exc)))
            continue
        out.append(_mel_row(row, mel, True, flac, time.perf_counter() - t0))
    return out


def _mel_row(row, mel, stopped, engine_audio, seconds, cut_short=False) -> dict:
    return {
        **row,
        **TTS_MEL.cells(mel),
        "stopped": bool(stopped),
        "hit_max_length": not stopped,
        "cut_short": bool(cut_short),
        "engine_audio": engine_audio,
        "synth_seconds": float(seconds),
        "status": "ok",
        "error": None,
    }


def compute_mels(rows: Iterable[dict], params: MelsParams) -> list[dict]:
    """Pure stage logic: a mel (and a teacher's audio) per request row, on
    `params.device` for SpeechT5 (the cached voice moves there once)."""
    synthesis = params.synthesis
    own = seeds_by_mel_key(params)
    rows = [
        {
            **row,
            "engine": synthesis.engine,
            "mel": params.mel,
            "seed": own.get(row["input_key"], synthesis.seed),
        }
        for row in rows
    ]
    with torch.inference_mode():
        if synthesis.engine == "speecht5":
            voice = load_speecht5_voice(synthesis.voice)
            if voice.mel.name != params.mel:
                raise ValueError(
                    f"voice predicts {voice.mel.name}, run is {params.mel}"
                )
            voice.model.to(resolve_device(params.device))
            return compute_mels_speecht5(voice, rows, synthesis, params.limit)
        engine = load_teacher(synthesis.engine, synthesis.voice)
        return compute_mels_teacher(engine, rows, get_mel_definition(params.mel))


MELS = StageSpec(
    name="mels",
    # 2: cut_short; 3: the mel as a float16 blob (TTS_MEL); 4: seed; 5: the mel
    # definition
    version=5,
    columns=(
        *TEXT_COLUMNS,
        ("engine", pa.string()),  # speecht5 | piper | espeak
        ("seed", pa.int64()),  # sampling (prenet dropout) seed of this item
        ("mel", pa.string()),  # mel definition: speecht5-16k | hifigan-22k
        ("n_mels", pa.int32()),
        ("n_frames", pa.int32()),
        ("log_mel", pa.binary()),  # TTS_MEL: a float16 blob (tasks.codecs)
        ("stopped", pa.bool_()),  # the stop token ended every chunk
        ("hit_max_length", pa.bool_()),  # some chunk was cut at the step limit
        # some chunk stopped far shorter than its phonemes need, on every seed tried
        ("cut_short", pa.bool_()),
        # teacher engines: their own audio, resampled to the mel definition's rate,
        # mono FLAC; null for speecht5 (the audio stage vocodes the mel)
        ("engine_audio", AUDIO_STRUCT),
        ("synth_seconds", pa.float64()),  # compute time, batch time shared by frames
        *ROW_STATUS,
    ),
    upstream=TTS_REQUESTS,
    key=mel_key,
    compute=compute_mels,
    inputs=("text", "normalized_text", "speaker"),
)
