"""Build harder ASR test material from a folder of short recordings with references.

The dev set (14 clips, 1-27 s) says little about long-form decoding, so this script
derives recordings that stress it, each with its reference transcript:

``long303`` / ``long600`` / ``longmix2..5``
    The clips shuffled and joined into one ~5 and one ~10 minute recording. ``long303``
    uses 0.4-1.5 s silences (the same recording ``bench_asr.py`` calls ``long``);
    ``long600`` uses 0.3-4 s gaps, some filled with low noise or with music-like tones
    (chords of sine waves), and a few clips quieter by 15 dB. ``longmix2`` to
    ``longmix5`` are four more ~5 minute recordings made like ``long600``.
``noisy_*``
    Each clip with white or brown noise at 5 to 15 dB SNR.
``tel8k_*``
    Each clip through an 8 kHz telephone band (resampled down and up, 300-3400 Hz).
``fast_*`` / ``slow_*``
    Each clip resampled so that it plays 1.25x faster and higher (a falsetto-like
    pitch) or 0.85x slower and lower.
``quiet_*``
    Each clip 30 dB quieter.
``sparse_*``
    Three to five words of a clip separated by 2-3.5 s pauses (the "few words, long
    pauses" case where a decoder is tempted to invent text).
``cut_*``
    A clip cut in the middle of a word at both ends; the reference keeps the words
    whose centre lies inside the cut.
``tail_*``
    Two clips joined and cut 60 ms after the last word ends: the last words must
    survive.
``narration_*`` (with ``--narrate TEXT_FILE``)
    Three ~5 minute recordings of the text's lines read by the Piper teacher voice
    (``teacher`` extra): clean, in brown noise at 10 dB SNR, and through the 8 kHz
    telephone band. Synthetic speech, but varied text with exact references.

Word boundaries for ``sparse``, ``cut`` and ``tail`` come from faster-whisper's word
timestamps (``parity`` extra) on the source clip, computed once and cached in
``words.json`` of the output folder. Everything is seeded: the same sources give
the same material.

Usage::

    python bench/longform_material.py --source ../shared/data/dev \
        --out bench/out/material --narrate samples/tts/sentences_300.txt
    python bench/longform_material.py --source samples/speech --out /tmp/material

The output folder holds one FLAC per recording and a ``manifest.csv`` (``audio_path``,
``reference``, ``kind``), so ``s2s transcribe OUT/manifest.csv`` scores it directly.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000


@dataclass
class Clip:
    name: str
    audio: np.ndarray  # float32, 16 kHz mono
    reference: str


@dataclass
class Recording:
    name: str
    kind: str
    audio: np.ndarray
    reference: str


def read_clips(source: Path) -> list[Clip]:
    with open(source / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    clips = []
    for row in rows:
        audio, rate = sf.read(
            source / row["audio_path"], dtype="float32", always_2d=True
        )
        audio = audio.mean(axis=1)
        if rate != SAMPLE_RATE:
            audio = soxr.resample(audio, rate, SAMPLE_RATE)
        name = Path(row["audio_path"]).stem
        clips.append(
            Clip(name, np.ascontiguousarray(audio, np.float32), row["reference"])
        )
    return clips


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if colour == "white":
        return white
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(1601) / 1601, mode="same")  # no DC drift
    return (brown / (np.std(brown) + 1e-9)).astype(np.float32)


def _tones(rng: np.random.Generator, seconds: float, level: float) -> np.ndarray:
    """A music-like gap: a few chords of three sine partials with soft edges."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n, np.float32)
    n_chords = max(1, int(seconds / 0.8))
    edges = np.linspace(0, n, n_chords + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        root = rng.uniform(110, 440)
        for ratio in (1.0, 1.25, 1.5):
            out[a:b] += np.sin(2 * np.pi * root * ratio * t[a:b]).astype(np.float32)
        ramp = min(400, (b - a) // 2)
        out[a : a + ramp] *= np.linspace(0, 1, ramp)
        out[b - ramp : b] *= np.linspace(1, 0, ramp)
    return out / 3 * level


def _fit(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x / peak * 0.95 if peak > 0.99 else x).astype(np.float32)


def concatenation(
    clips: list[Clip], target_s: float, rng: np.random.Generator, varied: bool
) -> tuple[np.ndarray, str]:
    parts, words, total = [], [], 0.0
    while total < target_s:
        for i in rng.permutation(len(clips)):
            clip = clips[i].audio
            if varied and rng.random() < 0.15:
                clip = clip * 10 ** (-15 / 20)  # a quieter speaker
            if varied:
                gap_s = rng.uniform(0.3, 4.0)
                kind = rng.choice(["silence", "noise", "tones"], p=[0.5, 0.25, 0.25])
                if kind == "silence":
                    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
                elif kind == "noise":
                    gap = _noise(rng, int(gap_s * SAMPLE_RATE), "white") * 0.003
                else:
                    gap = _tones(rng, gap_s, level=0.05)
            else:
                gap = np.zeros(int(rng.uniform(0.4, 1.5) * SAMPLE_RATE), np.float32)
            parts += [clip, gap]
            words.append(clips[i].reference)
            total += (len(clip) + len(gap)) / SAMPLE_RATE
            if total >= target_s:
                break
    return _fit(np.concatenate(parts)), " ".join(words)


def word_times(
    clips: list[Clip], cache: Path
) -> dict[str, list[tuple[str, float, float]]]:
    """(word, start_s, end_s) of each clip from faster-whisper, cached in a file."""
    if cache.exists():
        found = json.loads(cache.read_text())
        if all(c.name in found for c in clips):
            return {k: [tuple(w) for w in v] for k, v in found.items()}
    import bench_asr
    from faster_whisper import WhisperModel

    model = WhisperModel(bench_asr.ct2_model_dir(), device="cpu", compute_type="int8")
    out = {}
    for clip in clips:
        segments, _ = model.transcribe(
            clip.audio, language="en", beam_size=5, word_timestamps=True,
            vad_filter=False, condition_on_previous_text=False,
        )  # fmt: skip
        out[clip.name] = [
            (w.word.strip(), float(w.start), float(w.end))
            for s in segments
            for w in (s.words or [])
        ]
    cache.write_text(json.dumps(out, indent=1))
    return out


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def matched_words(
    timed: list[tuple[str, float, float]], reference: str
) -> list[tuple[int, str, float, float]]:
    """(index, word, start_s, end_s): the reference's own words, with the times of
    the recogniser's words that match them exactly (after lower-casing and dropping
    punctuation): recogniser errors never leak into a derived reference."""
    ref_words = reference.split()
    matcher = difflib.SequenceMatcher(
        a=[_norm(w) for w, _, _ in timed], b=[_norm(w) for w in ref_words],
        autojunk=False,
    )  # fmt: skip
    out = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            _, start, end = timed[block.a + k]
            out.append((block.b + k, ref_words[block.b + k], start, end))
    return out


def derived(
    clips: list[Clip], timed: dict, rng: np.random.Generator
) -> list[Recording]:
    out: list[Recording] = []
    words = {c.name: matched_words(timed.get(c.name) or [], c.reference) for c in clips}
    for clip in clips:
        x, name, ref = clip.audio, clip.name, clip.reference
        colour = "white" if rng.random() < 0.5 else "brown"
        snr_db = rng.uniform(5, 15)
        noise = _noise(rng, len(x), colour)
        noise *= _rms(x) / _rms(noise) * 10 ** (-snr_db / 20)
        out.append(Recording(f"noisy_{name}", "noisy", _fit(x + noise), ref))
        out.append(Recording(f"tel8k_{name}", "tel8k", _fit(_telephone(x)), ref))
        # play at rate r by resampling: r > 1 is faster and higher
        for kind, rate in (("fast", 1.25), ("slow", 0.85)):
            y = soxr.resample(x, SAMPLE_RATE, SAMPLE_RATE / rate)
            out.append(Recording(f"{kind}_{name}", kind, _fit(y), ref))
        out.append(Recording(f"quiet_{name}", "quiet", x * 10 ** (-30 / 20), ref))
        w = words[name]
        if len(w) >= 3:
            k = int(min(len(w), rng.integers(3, 6)))
            chosen = sorted(rng.choice(len(w), size=k, replace=False))
            pieces = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
            for j in chosen:
                _, _, a, b = w[j]
                pieces.append(x[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)])
                pieces.append(
                    np.zeros(int(rng.uniform(2.0, 3.5) * SAMPLE_RATE), np.float32)
                )
            text = " ".join(w[j][1] for j in chosen)
            out.append(
                Recording(f"sparse_{name}", "sparse", np.concatenate(pieces), text)
            )
        if len(w) >= 6:
            # cut inside the 2nd and the 2nd-to-last word; keep the reference words
            # from the first to the last one whose centre lies inside the cut
            a = (w[1][2] + w[1][3]) / 2
            b = (w[-2][2] + w[-2][3]) / 2
            inside = [i for i, _, s, e in w if a <= (s + e) / 2 <= b]
            kept = ref.split()[inside[0] : inside[-1] + 1]
            cut = x[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]
            out.append(Recording(f"cut_{name}", "cut", cut, " ".join(kept)))
    # tails: pairs of clips joined, cut 60 ms after the second one's last word
    with_words = [c for c in clips if words[c.name]]
    for i, clip in enumerate(with_words):
        other = with_words[(i + 1) % len(with_words)]
        end = max(e for *_, e in words[other.name])
        second = other.audio[: int((end + 0.06) * SAMPLE_RATE)]
        gap = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
        audio = np.concatenate([clip.audio, gap, second])
        ref = f"{clip.reference} {other.reference}"
        out.append(Recording(f"tail_{clip.name}", "tail", audio, ref))
    return out


def narrations(text_file: Path, rng: np.random.Generator) -> list[Recording]:
    """Three ~5 minute narrations of ``text_file``'s lines by the Piper teacher
    voice (extra ``teacher``): clean with 0.3-2 s pauses, with brown noise at
    10 dB SNR, and through the 8 kHz telephone band. Varied text, exact
    references."""
    from tasks.tts.engines import PiperEngine

    lines = [ln.strip() for ln in text_file.read_text().splitlines() if ln.strip()]
    order = rng.permutation(len(lines))
    engine = PiperEngine()
    out = []
    for n, kind in enumerate(("clean", "noisy", "tel8k")):
        parts, words, total = [], [], 0.0
        for i in order[n * 40 :]:
            speech = soxr.resample(
                engine.synthesize(lines[i]), engine.sample_rate, SAMPLE_RATE
            ).astype(np.float32)
            gap = np.zeros(int(rng.uniform(0.3, 2.0) * SAMPLE_RATE), np.float32)
            parts += [speech * 0.5, gap]
            words.append(lines[i])
            total += (len(speech) + len(gap)) / SAMPLE_RATE
            if total >= 300.0:
                break
        x = np.concatenate(parts)
        if kind == "noisy":
            noise = _noise(rng, len(x), "brown")
            x = x + noise * _rms(x) / _rms(noise) * 10 ** (-10 / 20)
        elif kind == "tel8k":
            x = _telephone(x)
        out.append(
            Recording(f"narration_{kind}", "narration", _fit(x), " ".join(words))
        )
    return out


def _telephone(x: np.ndarray) -> np.ndarray:
    """Through an 8 kHz channel band-limited to 300-3400 Hz, back at 16 kHz."""
    band = soxr.resample(x, SAMPLE_RATE, 8000)
    spec = np.fft.rfft(band)
    freqs = np.fft.rfftfreq(len(band), 1 / 8000)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    band = np.fft.irfft(spec, len(band)).astype(np.float32)
    return soxr.resample(band, 8000, SAMPLE_RATE).astype(np.float32)


def build(
    source: Path, out: Path, seed: int = 0, text_file: Path | None = None
) -> list[Recording]:
    clips = read_clips(source)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    recordings = []
    audio, ref = concatenation(clips, 300.0, np.random.default_rng(0), varied=False)
    recordings.append(Recording("long303", "long", audio, ref))
    audio, ref = concatenation(
        clips, 600.0, np.random.default_rng(seed + 1), varied=True
    )
    recordings.append(Recording("long600", "long", audio, ref))
    for k in range(2, 6):  # more varied long recordings, for steadier numbers
        rng_k = np.random.default_rng(seed + k)
        audio, ref = concatenation(clips, 300.0, rng_k, varied=True)
        recordings.append(Recording(f"longmix{k}", "longmix", audio, ref))
    recordings += derived(clips, word_times(clips, out / "words.json"), rng)
    if text_file is not None:
        recordings += narrations(text_file, np.random.default_rng(seed + 10))
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["audio_path", "reference", "kind"])
        for rec in recordings:
            sf.write(out / f"{rec.name}.flac", np.clip(rec.audio, -1, 1), SAMPLE_RATE)
            writer.writerow([f"{rec.name}.flac", rec.reference, rec.kind])
    return recordings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="folder with manifest.csv"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--narrate", type=Path, help="also three Piper narrations of this text file"
    )
    args = parser.parse_args()
    recordings = build(args.source, args.out, args.seed, args.narrate)
    kinds: dict[str, float] = {}
    for rec in recordings:
        kinds[rec.kind] = kinds.get(rec.kind, 0.0) + len(rec.audio) / SAMPLE_RATE
    for kind, seconds in kinds.items():
        print(f"{kind:8s} {seconds:8.1f} s")
    print(f"{len(recordings)} recordings in {args.out}")


if __name__ == "__main__":
    main()
