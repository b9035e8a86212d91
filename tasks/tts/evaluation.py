"""Stage `tts_evaluation`: how good is the synthesized speech?

Per utterance:

* ASR round trip: our Whisper (tiny.en by default, loaded once per process, batched
  across the shard) transcribes the audio; WER/CER against the input text after the
  same normaliser as ASR evaluation (`tasks.metrics`);
* predicted MOS: DNSMOS (``speechmos``: SIG, BAK, OVRL and P.808) on the 16 kHz
  audio; clips shorter than DNSMOS's 9 s window are tiled to fill it, by the
  package itself;
* duration and speaking rate (characters per second, words per minute), and the
  seconds per phoneme of the text actually spoken (`normalized_text`, counted by
  our English front end whatever the engine): `duration_flag` is `too_short`
  below 0.045 s per phoneme (cut short, or words skipped) and `too_long` above
  0.25 s (babbling on, long silences).

`summarize_tts` then reads every stage of the run and writes
``tts_evaluation/_summary.json``: counts and failures per stage, corpus round-trip
WER/CER with bootstrap CIs, mean DNSMOS, stop failures (cut at the step limit, or
stopped far too early on every seed tried), implausible durations, duration and
rate statistics, and synthesis RTFx (audio seconds per second of synthesis +
vocoder compute, model loading excluded, summed over rows so resumed runs count
whole).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import soxr

from s2s_models import TranscribeOptions
from s2s_models.audio import SAMPLE_RATE
from s2s_models.speecht5.phonemes import PhonemeTokenizer
from tasks.asr.models import get_asr
from tasks.codecs import decode_flac
from tasks.metrics import NORMALIZERS, normalize_text, ratio_with_ci, score_pair
from tasks.stage import (
    ROW_STATUS,
    StageSpec,
    error_text,
    fingerprint,
    read_stage,
    run_isolating_failures,
    stage_dir,
)
from tasks.tts.audio import AUDIO
from tasks.tts.mels import MELS
from tasks.tts.requests import TTS_REQUESTS

# plausible seconds per phoneme: normal speech is about 0.06-0.1
MIN_SECONDS_PER_PHONEME = 0.045
MAX_SECONDS_PER_PHONEME = 0.25
DNSMOS_KEYS = {
    "dnsmos_sig": "sig_mos",
    "dnsmos_bak": "bak_mos",
    "dnsmos_ovrl": "ovrl_mos",
    "dnsmos_p808": "p808_mos",
}


@dataclass(frozen=True)
class TtsEvalOptions:
    asr_model: str = "tiny.en"  # Whisper checkpoint of the round trip
    device: str = "auto"
    asr_batch_size: int = 8  # 30 s windows decoded together
    normalizer: str = "whisper_english"  # as in ASR evaluation
    dnsmos: bool = True  # predicted MOS (a few CPU seconds per clip)
    n_bootstrap: int = 1000  # resamples of the WER/CER confidence intervals
    seed: int = 0
    ci_level: float = 0.95

    def verify(self) -> None:
        if self.normalizer not in NORMALIZERS:
            raise ValueError(f"normalizer must be one of {NORMALIZERS}")
        if self.asr_batch_size < 1 or self.n_bootstrap < 1:
            raise ValueError("asr_batch_size and n_bootstrap must be >= 1")
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError("ci_level must be in (0, 1)")


def check_dnsmos() -> None:
    """Raise ImportError with the fix when DNSMOS cannot run here."""
    try:
        from speechmos import dnsmos  # noqa: F401 - imports librosa, onnxruntime
    except ImportError as exc:
        raise ImportError(
            f"DNSMOS needs the 'tts' extra (speechmos, librosa, onnxruntime): {exc}. "
            "Install it or run with --no-dnsmos."
        ) from exc


@dataclass(frozen=True)
class TtsEvaluationParams:
    """What the tts_evaluation stage runs with."""

    options: TtsEvalOptions
    asr_fp: str  # `model_fingerprint` of the round-trip ASR model


def eval_key(audio_key: str, params: TtsEvaluationParams) -> str:
    settings = asdict(params.options)
    for k in ("device", "asr_batch_size", "n_bootstrap", "seed", "ci_level"):
        settings.pop(k)  # none of these changes a row
    return fingerprint(TTS_EVALUATION.name, audio_key, params.asr_fp, settings)


def dnsmos_scores(audio: np.ndarray) -> dict[str, float | None]:
    """DNSMOS SIG/BAK/OVRL/P.808 of 16 kHz audio; None for silent or empty clips
    (the package would loop forever on an empty array)."""
    if audio.size < SAMPLE_RATE // 10 or not np.any(audio):
        return dict.fromkeys(DNSMOS_KEYS)
    from speechmos import dnsmos

    scores = dnsmos.run(np.clip(audio, -1.0, 1.0).astype(np.float32), SAMPLE_RATE)
    return {ours: float(scores[theirs]) for ours, theirs in DNSMOS_KEYS.items()}


@functools.cache
def _front_end() -> PhonemeTokenizer:
    return PhonemeTokenizer.for_front_end("phonemes")


def count_phonemes(text: str) -> int:
    """Phonemes of ``text`` read by our English front end (normalised again: a
    no-op on our own normalised text)."""
    tokenizer = _front_end()
    try:
        return tokenizer.count_units(tokenizer.encode(text).ids)
    except ValueError:  # refused (mostly markup): nothing to count
        return 0


def duration_flag(seconds: float, n_phonemes: int) -> str | None:
    """'too_short' / 'too_long' when ``seconds`` per phoneme is implausible."""
    if n_phonemes == 0:
        return None
    per = seconds / n_phonemes
    if per < MIN_SECONDS_PER_PHONEME:
        return "too_short"
    return "too_long" if per > MAX_SECONDS_PER_PHONEME else None


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Audio at Whisper's (and DNSMOS's) 16 kHz; 22,050 Hz voices are resampled."""
    if rate == SAMPLE_RATE:
        return audio
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32, copy=False)


def _transcribe_all(asr, audios, options: TranscribeOptions) -> list:
    """Transcripts, or the exception per item when a batch fails."""
    return run_isolating_failures(
        lambda batch: [r.text for r in asr.transcribe(batch, options)], audios
    )


def compute_tts_evaluation(
    rows: Iterable[dict], params: TtsEvaluationParams, asr=None
) -> list[dict]:
    """Pure stage logic. `rows` carry utt_id, input_key, text, normalized_text and
    the `audio` cell (FLAC at any rate: resampled to the 16 kHz Whisper and DNSMOS
    read); `asr` is the round-trip model (default: this
    process's `get_asr`). Returns one tts_evaluation row per input."""
    options = params.options
    options.verify()
    if asr is None:
        asr = get_asr(options.asr_model, options.device)
    keyed, spoken, audios = [], [], []
    for row in rows:
        keyed.append({k: row[k] for k in ("utt_id", "input_key", "text")})
        spoken.append(row.get("normalized_text") or row["text"] or "")
        audios.append(to_16k(*decode_flac(row["audio"]["bytes"])))
    asr_options = TranscribeOptions(batch_size=options.asr_batch_size)
    hypotheses = _transcribe_all(asr, audios, asr_options)
    out = []
    for row, said, audio, hyp in zip(keyed, spoken, audios, hypotheses, strict=True):
        n_phonemes = count_phonemes(said)
        dur = audio.size / SAMPLE_RATE
        base = {
            **row,
            "asr_model": options.asr_model,
            "duration_s": dur,
            "n_phonemes": n_phonemes,
            "seconds_per_phoneme": dur / n_phonemes if n_phonemes else None,
            "duration_flag": duration_flag(dur, n_phonemes),
        }
        if isinstance(hyp, Exception):
            out.append({**base, "status": "failed", "error": f"ASR: {error_text(hyp)}"})
            continue
        ref_norm = normalize_text(row["text"] or "", options.normalizer)
        hyp_norm = normalize_text(hyp, options.normalizer)
        s = score_pair(ref_norm, hyp_norm)
        text = row["text"] or ""
        base.update(
            hypothesis=hyp,
            reference_norm=ref_norm,
            hypothesis_norm=hyp_norm,
            wer=s["wer"],
            cer=s["cer"],
            ref_words=s["ref_words"],
            word_errors=s["substitutions"] + s["deletions"] + s["insertions"],
            ref_chars=s["ref_chars"],
            char_errors=s["char_errors"],
            chars_per_s=len(text) / dur if dur > 0 else math.nan,
            words_per_min=60 * len(text.split()) / dur if dur > 0 else math.nan,
            status="ok",
            error=None,
        )
        if options.dnsmos:
            try:
                base.update(dnsmos_scores(audio))
            except Exception as exc:  # noqa: BLE001 - MOS is optional per row
                base["error"] = f"DNSMOS: {error_text(exc)}"
        out.append(base)
    return out


TTS_EVALUATION = StageSpec(
    name="tts_evaluation",
    version=2,  # 2: n_phonemes, seconds_per_phoneme, duration_flag
    columns=(
        ("utt_id", pa.string()),
        ("input_key", pa.string()),
        ("text", pa.string()),
        ("hypothesis", pa.string()),  # ASR transcript of the synthesized audio
        ("reference_norm", pa.string()),
        ("hypothesis_norm", pa.string()),
        ("wer", pa.float64()),
        ("cer", pa.float64()),
        ("ref_words", pa.int64()),
        ("word_errors", pa.int64()),
        ("ref_chars", pa.int64()),
        ("char_errors", pa.int64()),
        ("duration_s", pa.float64()),
        ("chars_per_s", pa.float64()),  # characters of text per second of audio
        ("words_per_min", pa.float64()),
        ("n_phonemes", pa.int32()),  # of normalized_text, by our English front end
        ("seconds_per_phoneme", pa.float64()),
        ("duration_flag", pa.string()),  # too_short | too_long | null (plausible)
        ("dnsmos_sig", pa.float64()),  # null when DNSMOS was not run
        ("dnsmos_bak", pa.float64()),
        ("dnsmos_ovrl", pa.float64()),
        ("dnsmos_p808", pa.float64()),
        ("asr_model", pa.string()),
        *ROW_STATUS,
    ),
    upstream=AUDIO,
    key=eval_key,
    compute=compute_tts_evaluation,
    inputs=("text", "normalized_text", "audio"),
)
TTS_STAGES = (TTS_REQUESTS, MELS, AUDIO, TTS_EVALUATION)


# ---------------------------------------------------------------- summary


def summary_path(run_dir: str) -> str:
    return str(stage_dir(run_dir, TTS_EVALUATION) / "_summary.json")


def _stats(values: pd.Series) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {"mean": None, "p5": None, "p50": None, "p95": None}
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {
        "mean": float(v.mean()),
        "p5": float(p5),
        "p50": float(p50),
        "p95": float(p95),
    }


def _failures(frames: dict[str, pd.DataFrame]) -> list[dict]:
    out = []
    for stage, frame in frames.items():
        bad = frame[frame["status"] != "ok"]
        pairs = zip(bad["utt_id"], bad["error"], strict=True)
        out += [{"stage": stage, "utt_id": u, "error": e} for u, e in pairs]
    return out


def compute_tts_summary(
    frames: dict[str, pd.DataFrame], options: TtsEvalOptions
) -> dict:
    """Summary of a TTS run from its stages' rows, by stage name (see the module
    docstring)."""
    req, mels, audio, ev = (frames[s.name] for s in TTS_STAGES)
    ok_ev = ev[ev["status"] == "ok"]
    scored = ok_ev[ok_ev["ref_words"] > 0]
    level, nb, seed = options.ci_level, options.n_bootstrap, options.seed
    wer = ratio_with_ci(scored["word_errors"], scored["ref_words"], nb, seed, level)
    cer = ratio_with_ci(scored["char_errors"], scored["ref_chars"], nb, seed, level)
    ok_mels, ok_audio = mels[mels["status"] == "ok"], audio[audio["status"] == "ok"]
    compute_s = float(ok_mels["synth_seconds"].sum() + ok_audio["vocode_seconds"].sum())
    audio_s = float(ok_audio["duration_s"].sum())
    cut_short = ok_mels["cut_short"].fillna(False).astype(bool)
    n_stop_fail = int((ok_mels["hit_max_length"].astype(bool) | cut_short).sum())
    flags = ok_ev["duration_flag"].dropna()
    clean = lambda x: None if x is None or math.isnan(x) else x  # noqa: E731
    summary = {
        "n_requests": len(req),
        "n_ok": int(len(ok_ev)),
        "n_failed": {s: int((f["status"] != "ok").sum()) for s, f in frames.items()},
        "n_scored": int(len(scored)),
        "wer": clean(wer[0]),
        "wer_ci_low": clean(wer[1]),
        "wer_ci_high": clean(wer[2]),
        "cer": clean(cer[0]),
        "cer_ci_low": clean(cer[1]),
        "cer_ci_high": clean(cer[2]),
        "ci_level": level,
        "normalizer": options.normalizer,
        "asr_model": options.asr_model,
        "dnsmos": {k: _stats(ok_ev[k]) for k in DNSMOS_KEYS},
        "n_stop_failures": n_stop_fail,
        "stop_failure_rate": n_stop_fail / len(ok_mels) if len(ok_mels) else None,
        "n_cut_short": int(cut_short.sum()),
        "n_duration_flags": {
            f: int((flags == f).sum()) for f in ("too_short", "too_long")
        },
        "duration_flagged": sorted(ok_ev.loc[flags.index, "utt_id"]),
        "seconds_per_phoneme": _stats(ok_ev["seconds_per_phoneme"]),
        "audio_seconds": audio_s,
        "duration_s": _stats(ok_audio["duration_s"]),
        "chars_per_s": _stats(ok_ev["chars_per_s"]),
        "words_per_min": _stats(ok_ev["words_per_min"]),
        "synthesis_seconds": compute_s,
        "synthesis_rtfx": audio_s / compute_s if compute_s > 0 else None,
        "failures": _failures(frames),
    }
    return summary


_READ = {  # the columns of each stage the summary needs (None: all)
    TTS_REQUESTS: ["utt_id", "status", "error"],
    MELS: ["utt_id", "status", "error", "hit_max_length", "cut_short", "synth_seconds"],
    AUDIO: ["utt_id", "status", "error", "duration_s", "vocode_seconds"],
    TTS_EVALUATION: None,
}


def summarize_tts(run_dir: str, options: TtsEvalOptions, extra: dict) -> dict:
    """Compute the summary of RUN_DIR, add `extra` (engine, vocoder, wall times),
    write it atomically to ``tts_evaluation/_summary.json`` and return it."""
    frames = {
        s.name: read_stage(run_dir, s, cols).to_pandas() for s, cols in _READ.items()
    }
    summary = {**compute_tts_summary(frames, options), **extra}
    path = summary_path(run_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    os.replace(path + ".tmp", path)
    return summary
