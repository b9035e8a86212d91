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

from prefect import flow

from tasks.asr.models import model_fingerprint
from tasks.stage import RunLock
from tasks.stage.runner import run_stage
from tasks.stage.shutdown import stop_on_signals
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
) -> dict:
    """Synthesize `texts` into a TTS dataset in RUN_DIR, evaluate it, report on it.

    `synthesis`: engine, voice and generation settings; `text`: which texts are
    accepted and how they are chunked; `evaluation`: the round trip and DNSMOS.
    `device` (auto: CUDA when available) runs SpeechT5 generation, HiFi-GAN and the
    round-trip ASR. Returns a JSON-friendly summary: per-stage reports, the
    evaluation summary (round-trip WER with CI, DNSMOS, stop failures, RTFx), the
    report path and, with `export_ljspeech_dir`, what was exported.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    evaluation = dataclasses.replace(evaluation, device=device)  # one device per run
    check_engine(
        synthesis.engine, synthesis.voice, synthesis.speaker_embedding, synthesis.mel
    )
    for options in (synthesis, text, evaluation):
        options.verify()
    if evaluation.dnsmos:
        check_dnsmos()
    spec = resolve_vocoder(vocoder, synthesis.engine, synthesis.voice, synthesis.mel)
    mel = run_mel(synthesis.engine, synthesis.voice, synthesis.mel)
    with stop_on_signals(), RunLock(run_dir):
        engine_fp = engine_fingerprint(synthesis.engine, synthesis.voice)
        limit = chunk_limit(text, synthesis)
        requests = TtsRequestsParams(text, synthesis, engine_fp, limit)
        mels = MelsParams(synthesis, engine_fp, limit, device, mel.name)
        audio = AudioParams(spec, device)
        scoring = TtsEvaluationParams(
            evaluation, model_fingerprint(evaluation.asr_model)
        )
        stages = [
            run_stage(
                run_dir, TTS_REQUESTS, requests, shard_size, retry_failed, inputs=texts
            ),
            run_stage(run_dir, MELS, mels, shard_size, retry_failed),
            run_stage(run_dir, AUDIO, audio, shard_size, retry_failed),
            run_stage(run_dir, TTS_EVALUATION, scoring, shard_size, retry_failed),
        ]
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
        summary = summarize_tts(run_dir, evaluation, {"run_info": run_info})
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
