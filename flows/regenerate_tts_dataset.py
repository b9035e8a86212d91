"""Flow `regenerate-tts-dataset`: texts -> tts_requests -> mels -> audio ->
tts_evaluation -> RUN_DIR/report.html (and optionally an LJSpeech folder).

CLI: `s2s synthesize TEXTS... --out RUN_DIR`. Every stage writes Parquet parts
under RUN_DIR/<stage>/; a rerun (after a kill, or with more texts) only does the
rows whose text, engine, voice or settings changed, exactly like the
transcription flow. The `audio` stage loads directly with `datasets`.
"""

# Without `from __future__ import annotations`: Prefect validates the parameters
# against these annotations, and a served flow's function travels to its run's
# process pickled by value, with only the globals its body uses: string
# annotations naming the option dataclasses could not be resolved there.

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from prefect import flow

from tasks.asr.models import model_fingerprint
from tasks.review.decisions import rejected_seeds
from tasks.review.reviews import read_reviews
from tasks.stage import RunLock, read_stage, write_part, write_stage_record
from tasks.stage.parts import list_parts
from tasks.stage.runner import StageReport, run_stage
from tasks.stage.shutdown import stop_on_signals
from tasks.tts.attempts import (
    TTS_ATTEMPTS,
    LoopOptions,
    attempt_row,
    best_seed,
    current_attempts,
    failing,
    next_seed,
    start_seeds,
    summarize_attempts,
)
from tasks.tts.audio import AUDIO, AudioParams, export_ljspeech, resolve_vocoder
from tasks.tts.engines import (
    SynthesisOptions,
    check_engine,
    engine_fingerprint,
    run_mel,
)
from tasks.tts.evaluation import (
    TTS_EVALUATION,
    TtsEvalOptions,
    TtsEvaluationParams,
    check_dnsmos,
    summarize_tts,
)
from tasks.tts.mels import MELS, MelsParams
from tasks.tts.report import report_tts_run
from tasks.tts.requests import (
    TTS_REQUESTS,
    TextOptions,
    TtsRequestsParams,
    chunk_limit,
)


@flow(name="regenerate-tts-dataset", log_prints=False)
def regenerate_tts_dataset(
    texts: list[str],
    run_dir: str,
    synthesis: SynthesisOptions = SynthesisOptions(),
    text: TextOptions = TextOptions(),
    evaluation: TtsEvalOptions = TtsEvalOptions(),
    vocoder: str = "auto",
    device: str = "auto",
    export_ljspeech_dir: str | None = None,
    shard_size: int = 64,
    compare_to: str | None = None,
    retry_failed: bool = False,
    loop: LoopOptions = LoopOptions(),
) -> dict:
    """Synthesize `texts` into a TTS dataset in RUN_DIR, evaluate it, report on it.

    `synthesis`: engine, voice and generation settings; `text`: which texts are
    accepted and how they are chunked; `evaluation`: the round trip and DNSMOS.
    `device` (auto: CUDA when available) runs SpeechT5 generation, HiFi-GAN and the
    round-trip ASR. Returns a JSON-friendly summary: per-stage reports, the
    evaluation summary (round-trip WER with CI, DNSMOS, stop failures, RTFx), the
    report path and, with `export_ljspeech_dir`, what was exported.

    Items a reviewer rejected (RUN_DIR/reviews) are generated again with a new
    seed; accepted ones never are. `loop`: items whose round-trip WER is above
    `loop.max_round_trip_wer` are generated again, a new seed each time, up to
    `loop.max_attempts` tries; the best try is kept and every try recorded
    (RUN_DIR/tts_attempts).
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    evaluation = dataclasses.replace(evaluation, device=device)  # one device per run
    check_engine(
        synthesis.engine, synthesis.voice, synthesis.speaker_embedding, synthesis.mel
    )
    for options in (synthesis, text, evaluation, loop):
        options.verify()
    if evaluation.dnsmos:
        check_dnsmos()
    spec = resolve_vocoder(vocoder, synthesis.engine, synthesis.voice, synthesis.mel)
    mel = run_mel(synthesis.engine, synthesis.voice, synthesis.mel)
    with stop_on_signals(), RunLock(run_dir):
        engine_fp = engine_fingerprint(synthesis.engine, synthesis.voice)
        limit = chunk_limit(text, synthesis)
        requests = TtsRequestsParams(text, synthesis, engine_fp, limit)
        mels = MelsParams(synthesis, engine_fp, limit, device, mel=mel.name)
        audio = AudioParams(spec, device)
        scoring = TtsEvaluationParams(
            evaluation, model_fingerprint(evaluation.asr_model)
        )
        stages = [
            run_stage(
                run_dir, TTS_REQUESTS, requests, shard_size, retry_failed, inputs=texts
            )
        ]
        downstream = [(MELS, mels), (AUDIO, audio), (TTS_EVALUATION, scoring)]
        stages += synthesis_rounds(run_dir, downstream, loop, shard_size, retry_failed)
        run_info = {
            "title": f"TTS dataset review: {Path(run_dir).name}",
            "engine": synthesis.engine,
            "voice": synthesis.voice,
            "vocoder": spec.kind,
            "vocoder_path": spec.path,
            "mel": mel.name,
            "sample_rate": mel.sample_rate,
            "speaker_embedding": synthesis.speaker_embedding,
            "texts": texts,
            "started_at": started_at,
            "stage_seconds": {s.stage: s.wall_s for s in stages},
        }
        attempts = summarize_attempts(read_attempts(run_dir), loop)
        extra = {"run_info": run_info, "attempts": attempts}
        summary = summarize_tts(run_dir, evaluation, extra)
        export = None
        if export_ljspeech_dir:
            export = export_ljspeech(run_dir, export_ljspeech_dir)
        run_info["wall_seconds"] = round(time.perf_counter() - t0, 3)
        report = report_tts_run(run_dir, run_info, compare_to)
    return {
        "run_dir": run_dir,
        "stages": {s.stage: s.as_dict() for s in stages},
        "evaluation": summary,
        "export": export,
        "report": report,
        "run_info": run_info,
    }


def read_attempts(run_dir: str) -> list[dict]:
    if not list_parts(run_dir, TTS_ATTEMPTS):
        return []
    return read_stage(run_dir, TTS_ATTEMPTS).to_pylist()


def _merge(reports: list[StageReport]) -> StageReport:
    """One stage's report over the rounds it ran in."""
    last = reports[-1]
    merged = StageReport(last.stage, n_skipped=reports[0].n_skipped)
    for r in reports:
        merged.n_shards += r.n_shards
        merged.n_todo += r.n_todo
        merged.n_removed += r.n_removed
        merged.audio_s += r.audio_s
        merged.failed_shards += r.failed_shards
        merged.wall_s += r.wall_s
    return merged


def synthesis_rounds(
    run_dir: str, stages: list, loop: LoopOptions, shard_size: int, retry: bool
) -> list[StageReport]:
    """Run mels -> audio -> tts_evaluation with each item's seed (see
    tasks.tts.attempts), again for the items whose round trip fails while tries
    are left, then once more for the items whose best try is not the last one.
    Records every try in tts_attempts; returns one report per stage."""
    (_, mels), *_ = stages
    base = mels.synthesis.seed
    requests = read_stage(run_dir, TTS_REQUESTS, ["utt_id", "input_key", "status"])
    keys = {
        r["utt_id"]: r["input_key"] for r in requests.to_pylist() if r["status"] == "ok"
    }
    reviews = read_reviews(run_dir)
    old = read_attempts(run_dir)
    history = current_attempts(old, keys)
    seeds, accepted = start_seeds(keys, base, reviews, history)
    rejected = rejected_seeds(reviews)
    reports: dict[str, list[StageReport]] = {}

    def run_round() -> dict[str, float | None]:
        own = tuple((keys[u], s) for u, s in sorted(seeds.items()) if s != base)
        for stage, params in stages:
            if stage is MELS:
                params = dataclasses.replace(params, item_seeds=own)
            report = run_stage(run_dir, stage, params, shard_size, retry)
            reports.setdefault(stage.name, []).append(report)
        ev = read_stage(run_dir, TTS_EVALUATION, ["utt_id", "wer", "status"])
        scores = {
            r["utt_id"]: r["wer"] if r["status"] == "ok" else None
            for r in ev.to_pylist()
        }
        for utt_id, wer in scores.items():
            mine = history.setdefault(utt_id, [])
            if utt_id in keys and all(r["seed"] != seeds[utt_id] for r in mine):
                mine.append(
                    attempt_row(utt_id, keys[utt_id], base, seeds[utt_id], wer, loop)
                )
        return scores

    scores = run_round()
    while again := failing(scores, history, accepted, loop):
        for utt_id in again:
            tried = {r["seed"] for r in history[utt_id]}
            seeds[utt_id] = next_seed(base, tried | rejected.get(utt_id, set()))
        scores = run_round()
    best = {u: best_seed(history.get(u, []), rejected.get(u, set())) for u in seeds}
    moved = {
        u: s
        for u, s in best.items()
        if s is not None and s != seeds[u] and u not in accepted
    }
    if moved:  # the best try was not the last: make it again (same seed)
        seeds.update(moved)
        run_round()
    rows = [
        {**r, "kept": r["seed"] == seeds.get(u)}
        for u, mine in sorted(history.items())
        for r in mine
    ]
    if rows:
        table = pa.Table.from_pylist(rows, TTS_ATTEMPTS.schema)
        written = write_part(run_dir, TTS_ATTEMPTS, 0, table)
        for stale in list_parts(run_dir, TTS_ATTEMPTS):
            if stale != written:
                stale.unlink()
        record = {"parameters": dataclasses.asdict(loop), "n_rows": len(rows)}
        write_stage_record(run_dir, TTS_ATTEMPTS, record)
    return [_merge(reports[stage.name]) for stage, _ in stages]
