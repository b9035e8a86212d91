"""Flow `regenerate-tts-dataset`: texts -> tts_requests -> mels -> audio ->
tts_evaluation -> RUN_DIR/report.html (and optionally an LJSpeech folder).

CLI: `s2s synthesize TEXTS... --out RUN_DIR`. Every stage writes Parquet parts
under RUN_DIR/<stage>/; a rerun (after a kill, or with more texts) only does the
rows whose text, engine, voice or settings changed, exactly like the
transcription flow. The `audio` stage loads directly with `datasets`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow

from flows._common import StageReport, finish_stage, part_indices, run_shards
from tasks.shutdown import stop_on_signals
from tasks.stage import (
    RunLock,
    chunked,
    existing_rows,
    is_done,
    plan_downstream,
    prepare_stage,
)
from tasks.synthesize import (
    SynthesisOptions,
    TextOptions,
    chunk_limit,
    mel_key,
    mels_shard,
    read_texts,
    request_key,
    tts_requests_shard,
)
from tasks.transcribe import model_fingerprint
from tasks.tts_engines import check_engine, engine_fingerprint
from tasks.tts_evaluate import (
    TtsEvalOptions,
    check_dnsmos,
    eval_key,
    summarize_tts,
    tts_evaluation_shard,
)
from tasks.tts_report import report_tts_run
from tasks.vocode import audio_key, audio_shard, export_ljspeech, resolve_vocoder

STAGE_CONCURRENCY = 1  # one model per process; torch already uses every core


def requests_stage(
    run_dir: str, texts: list[str], options: TextOptions, synthesis: SynthesisOptions,
    engine_fp: str, shard_size: int, retry_failed: bool,
) -> StageReport:  # fmt: skip
    started = time.perf_counter()
    items = read_texts(texts)
    keys = [request_key(item, options, engine_fp) for item in items]
    done = existing_rows(prepare_stage(run_dir, "tts_requests"))
    todo = [(item, key) for item, key in zip(items, keys, strict=True)
            if not is_done(done.get(item.utt_id), key, retry_failed)]  # fmt: skip
    shards = chunked(todo, shard_size)
    report = StageReport("tts_requests", len(shards), len(todo), len(items) - len(todo))
    calls = [
        {"run_dir": run_dir, "part_index": index,
         "items": [asdict(item) for item, _ in shard], "keys": [k for _, k in shard],
         "text_options": asdict(options), "synthesis": asdict(synthesis)}
        for index, shard in zip(
            part_indices(run_dir, "tts_requests", len(shards)), shards, strict=True
        )
    ]  # fmt: skip
    report.failed_shards = run_shards(
        tts_requests_shard, calls, [len(s) for s in shards], "tts_requests", "text",
        STAGE_CONCURRENCY,
    )  # fmt: skip
    wanted = {item.utt_id: key for item, key in zip(items, keys, strict=True)}
    record = {"inputs": texts, "parameters": asdict(options), "shard_size": shard_size}
    return finish_stage(run_dir, report, wanted, started, record)


def downstream_stage(
    run_dir: str, upstream: str, stage: str, key_fn, task, task_args: dict,
    shard_size: int, retry_failed: bool, record: dict,
) -> StageReport:  # fmt: skip
    """Plan `stage` from the ok rows of `upstream`, run its shards, compact, record."""
    started = time.perf_counter()
    shards, wanted = plan_downstream(
        run_dir, upstream, stage, key_fn, shard_size, retry_failed
    )
    n_todo = sum(s.n_items for s in shards)
    report = StageReport(stage, len(shards), n_todo, len(wanted) - n_todo)
    calls = [
        {"run_dir": run_dir, "part_index": index, "upstream_part": shard.upstream_part,
         "utt_ids": shard.utt_ids, **task_args}
        for index, shard in zip(
            part_indices(run_dir, stage, len(shards)), shards, strict=True
        )
    ]  # fmt: skip
    report.failed_shards = run_shards(
        task, calls, [s.n_items for s in shards], stage, "utt", STAGE_CONCURRENCY
    )
    record = {"upstream": upstream, "shard_size": shard_size, **record}
    return finish_stage(run_dir, report, wanted, started, record)


@flow(name="regenerate-tts-dataset", log_prints=False)
def regenerate_tts_dataset(
    texts: list[str],
    run_dir: str,
    engine: str = "speecht5",
    voice: str = "default",
    vocoder: str = "auto",
    speaker_embedding: str | None = None,
    export_ljspeech_dir: str | None = None,
    shard_size: int = 64,
    batch_size: int = 8,
    seed: int = 0,
    max_chars: int = 1000,
    max_chunk_chars: int = 300,
    asr_model: str = "tiny.en",
    device: str = "auto",
    dnsmos: bool = True,
    compare_to: str | None = None,
    retry_failed: bool = False,
) -> dict:
    """Synthesize `texts` into a TTS dataset in RUN_DIR, evaluate it, report on it.

    Returns a JSON-friendly summary: per-stage reports, the evaluation summary
    (round-trip WER with CI, DNSMOS, stop failures, RTFx), the report path and,
    with `export_ljspeech_dir`, what was exported.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    check_engine(engine, voice, speaker_embedding)
    synthesis = SynthesisOptions(engine, voice, speaker_embedding, batch_size, seed)
    text_options = TextOptions(max_chars, max_chunk_chars)
    eval_options = TtsEvalOptions(asr_model, device, dnsmos=dnsmos)
    for options in (synthesis, text_options, eval_options):
        options.verify()
    if dnsmos:
        check_dnsmos()
    spec = resolve_vocoder(vocoder, engine, voice)
    with stop_on_signals(), RunLock(run_dir):
        engine_fp = engine_fingerprint(engine, voice)
        limit = chunk_limit(text_options, synthesis)
        asr_fp = model_fingerprint(asr_model)
        stages = [
            requests_stage(run_dir, texts, text_options, synthesis, engine_fp,
                           shard_size, retry_failed),
            downstream_stage(
                run_dir, "tts_requests", "mels",
                lambda k: mel_key(k, engine_fp, synthesis, limit), mels_shard,
                {"synthesis": asdict(synthesis), "engine_fp": engine_fp,
                 "limit": limit, "device": device},
                shard_size, retry_failed, {"parameters": asdict(synthesis)},
            ),
            downstream_stage(
                run_dir, "mels", "audio", lambda k: audio_key(k, spec), audio_shard,
                {"spec": asdict(spec), "device": device}, shard_size, retry_failed,
                {"vocoder": asdict(spec)},
            ),
            downstream_stage(
                run_dir, "audio", "tts_evaluation",
                lambda k: eval_key(k, asr_fp, eval_options), tts_evaluation_shard,
                {"options": asdict(eval_options), "asr_fp": asr_fp}, shard_size,
                retry_failed, {"parameters": asdict(eval_options)},
            ),
        ]  # fmt: skip
        run_info = {
            "title": f"TTS dataset review: {Path(run_dir).name}",
            "engine": engine, "voice": voice, "vocoder": spec.kind,
            "vocoder_path": spec.path, "speaker_embedding": speaker_embedding,
            "texts": texts, "started_at": started_at,
            "stage_seconds": {s.stage: s.wall_s for s in stages},
        }  # fmt: skip
        summary = summarize_tts(run_dir, eval_options, {"run_info": run_info})
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
