"""SIGKILL from outside, at moments the product does not choose.

The real `s2s` command runs in its own process group, with its own temporary
Prefect server, and the whole group is killed with SIGKILL at moments spread over
the run: while a stage writes its parts, while the report is written, during a
checkpoint save, mid-epoch. Each time the same command is run again. At the end
every stage holds the rows of an uninterrupted run (the deterministic columns,
sorted by utt_id), nothing temporary is left, and no process of a killed run
(its Prefect/uvicorn server included) survives it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tasks.asr.evaluation import EVALUATION
from tasks.asr.features import FEATURES
from tasks.asr.ingest import INGEST
from tasks.asr.transcripts import TRANSCRIPTS
from tasks.stage import StageSpec, read_stage
from tasks.stage.parts import TMP_MARKER
from tasks.tts.audio import AUDIO
from tasks.tts.engines import load_speecht5_voice
from tasks.tts.evaluation import TTS_EVALUATION
from tasks.tts.mels import MELS
from tasks.tts.requests import TTS_REQUESTS
from tests.conftest import REPO, SAMPLES
from tests.flows.test_train_tts import HELDOUT, write_chirp_dataset

pytestmark = [pytest.mark.slow, pytest.mark.required]

POLL_S = 0.002  # a part is written in milliseconds: look often
Trigger = Callable[[Path, float], "str | None"]  # (run folder, start) -> why kill


def _env(tmp_path: Path) -> dict:
    """Each run starts its own Prefect server (none is shared), in a private home."""
    home = tmp_path / "prefect-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}


def _s2s(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def _session(sid: int) -> list[psutil.Process]:
    """Every live process of session `sid` (the killed command's group)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def _run(cmd: list[str], env: dict, log: Path, trigger: Trigger | None, folder: Path):
    """Run `cmd` in a new session. When `trigger` names a reason, SIGKILL the whole
    group and check that nothing of it survives. Returns the return code, the
    reason of the kill and how many Prefect (uvicorn) servers the group held."""
    started = time.time()
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            while proc.poll() is None and trigger is not None:
                reason = trigger(folder, started)
                if reason is None:
                    time.sleep(POLL_S)
                    continue
                group = [psutil.Process(proc.pid), *_children(proc.pid)]
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                _, alive = psutil.wait_procs(group, timeout=30)
                assert not alive, f"survived the kill ({reason}): {alive}"
                assert not _session(proc.pid), "a process of the killed run survived"
                servers = [p for p in group[1:] if "uvicorn" in p.info_cmdline]
                return proc.returncode, reason, len(servers)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return proc.returncode, None, 0


def _children(pid: int) -> list[psutil.Process]:
    """The command's descendants, with their command lines read while alive."""
    found = []
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                child.info_cmdline = " ".join(child.cmdline())
            except psutil.Error:
                child.info_cmdline = ""
            found.append(child)
    except psutil.Error:
        pass
    return found


def _has(stage: str) -> Trigger:
    """Kill once the stage folder holds a temporary file (a write in progress) or,
    failing that, a second finished part."""

    def trigger(folder: Path, _: float) -> str | None:
        try:
            names = os.listdir(folder / stage)
        except FileNotFoundError:
            return None
        if any(TMP_MARKER in n for n in names):
            return f"{stage}: mid-write"
        if sum(n.startswith("part-") for n in names) >= 2:
            return f"{stage}: after 2 parts"
        return None

    return trigger


def _written_since(relative: str) -> Trigger:
    """Kill once `relative` was (re)written by this run: the step after it runs."""

    def trigger(folder: Path, started: float) -> str | None:
        try:
            if (folder / relative).stat().st_mtime >= started:
                return f"after {relative}"
        except FileNotFoundError:
            pass
        return None

    return trigger


def _later(trigger: Trigger, seconds: float) -> Trigger:
    """`trigger`, `seconds` after it first fired."""
    fired: list[float] = []

    def delayed(folder: Path, started: float) -> str | None:
        if not fired:
            if trigger(folder, started) is None:
                return None
            fired.append(time.time())
        if time.time() - fired[0] < seconds:
            return None
        return f"{seconds} s {trigger(folder, started)}"

    return delayed


def _frames(run: Path, columns: dict[StageSpec, list[str]]) -> dict:
    frames = {}
    for stage, cols in columns.items():
        table = read_stage(run, stage, cols).to_pandas()
        frames[stage.name] = table.sort_values("utt_id").reset_index(drop=True)
    return frames


def _kill_and_rerun(tmp_path, args, triggers, columns, stages):
    """The reference run, then one killed run per trigger, then a run to the end;
    returns what each kill hit. Every stage must equal the reference."""
    env = _env(tmp_path)
    reference, run = tmp_path / "reference", tmp_path / "run"
    t0 = time.monotonic()
    rc, _, _ = _run(_s2s(*args(reference)), env, tmp_path / "ref.log", None, reference)
    assert rc == 0, (tmp_path / "ref.log").read_text()[-3000:]
    took = time.monotonic() - t0
    hits = []
    for i, make in enumerate(triggers):
        log = tmp_path / f"kill-{i}.log"
        rc, reason, n_servers = _run(_s2s(*args(run)), env, log, make(took), run)
        assert rc == -signal.SIGKILL, (reason, log.read_text()[-3000:])
        hits.append((reason, n_servers))
    rc, _, _ = _run(_s2s(*args(run)), env, tmp_path / "last.log", None, run)
    assert rc == 0, (tmp_path / "last.log").read_text()[-3000:]
    got, want = _frames(run, columns), _frames(reference, columns)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
    for stage in stages:
        left = [n for n in os.listdir(run / stage) if TMP_MARKER in n or "tmp" in n]
        assert not left, f"{stage} keeps temporary files: {left}"
    assert (run / "report.html").exists()
    print(f"uninterrupted {took:.0f} s; kills: {hits}")
    return hits


TRANSCRIBE_COLUMNS = {
    INGEST: ["utt_id", "input_key", "source_sha256", "duration_s", "status"],
    FEATURES: ["utt_id", "input_key", "n_frames", "peak", "rms_dbfs", "status"],
    TRANSCRIPTS: ["utt_id", "input_key", "text", "avg_logprob", "status"],
    EVALUATION: ["utt_id", "reference_norm", "hypothesis_norm", "wer", "cer"],
}


def test_transcribe_killed_from_outside_then_rerun(tmp_path):
    corpus = tmp_path / "corpus"  # three clips (2-11 s), with their references
    corpus.mkdir()
    names = ("jfk.flac", "LJ002-0020.wav", "sense_and_sensibility_01_austen_64kb-0880")
    manifest = (SAMPLES / "manifest.csv").read_text().splitlines()
    lines = [manifest[0]] + [x for x in manifest[1:] if x.startswith(names)]
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    for line in lines[1:]:
        name = line.split(",")[0]
        shutil.copy(SAMPLES / name, corpus / name)

    def args(out: Path) -> list[str]:
        return ["transcribe", str(corpus), "--out", str(out), "--shard-size", "1"] + [
            "--asr-shard-size",
            "1",
        ]

    triggers = [
        lambda took: _has(INGEST.name),  # while ingest writes its parts
        lambda took: _has(TRANSCRIPTS.name),  # while transcripts are decoded, written
        lambda took: _written_since(f"{EVALUATION.name}/_summary.json"),  # report
    ]
    stages = [s.name for s in TRANSCRIBE_COLUMNS]
    hits = _kill_and_rerun(tmp_path, args, triggers, TRANSCRIBE_COLUMNS, stages)
    # each killed group held the run's own Prefect server
    assert all(n >= 1 for _, n in hits), hits


SYNTHESIZE_COLUMNS = {
    TTS_REQUESTS: ["utt_id", "input_key", "normalized_text", "n_chunks", "status"],
    MELS: ["utt_id", "input_key", "n_frames", "log_mel", "stopped", "status"],
    AUDIO: ["utt_id", "input_key", "duration_s", "vocoder", "status"],
    TTS_EVALUATION: ["utt_id", "input_key", "hypothesis", "wer", "status"],
}


def test_synthesize_killed_from_outside_then_rerun(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text(
        "The birch canoe slid on the smooth planks.\n"
        "Glue the sheet to the dark blue background.\n"
        "It is easy to tell the depth of a well.\n"
        "These days a chicken leg is a rare dish.\n"
    )

    def args(out: Path) -> list[str]:
        return ["synthesize", str(texts), "--out", str(out), "--shard-size", "1"] + [
            "--no-dnsmos"
        ]

    triggers = [
        lambda took: _has(MELS.name),
        lambda took: _has(AUDIO.name),
        lambda took: _written_since(f"{TTS_EVALUATION.name}/_stage.json"),  # report
    ]
    stages = [s.name for s in SYNTHESIZE_COLUMNS]
    hits = _kill_and_rerun(tmp_path, args, triggers, SYNTHESIZE_COLUMNS, stages)
    assert all(n >= 1 for _, n in hits), hits


def _train_args(dataset: str, ckpt: Path, heldout: Path) -> list[str]:
    return [
        "train-tts",
        dataset,
        "--out",
        str(ckpt),
        "--heldout",
        str(heldout),
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--eval-sentences",
        "1",
        "--frames-per-batch",
        "160",  # two chirps a batch: an epoch is several steps
        "--no-bf16",
    ]


def _saving(folder: Path, _: float) -> str | None:
    names = os.listdir(folder) if folder.exists() else []
    if any(n.startswith((".latest.tmp-", ".latest.old-")) for n in names):
        return "during a checkpoint save"
    return None


def test_train_tts_killed_mid_epoch_then_resumed(tmp_path):
    dataset = write_chirp_dataset(tmp_path / "dataset")
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(HELDOUT) + "\n")
    env = _env(tmp_path)
    ckpt = tmp_path / "ckpt"
    cmd = _s2s(*_train_args(dataset, ckpt, heldout))

    # mid-epoch in the first segment (the batches of an epoch are a few steps), in
    # the middle of a checkpoint save, in the evaluation right after a save
    triggers = [
        _later(_written_since("training_data.parquet"), 1.0),
        _saving,
        _written_since("latest/trainer.json"),
    ]
    hits = []
    for i, trigger in enumerate(triggers):
        log = tmp_path / f"kill-{i}.log"
        rc, reason, _ = _run(cmd, env, log, trigger, ckpt)
        assert rc == -signal.SIGKILL, (reason, log.read_text()[-3000:])
        hits.append(reason)
        if (ckpt / "latest").exists():  # whole segments only
            saved = json.loads((ckpt / "latest" / "trainer.json").read_text())
            assert saved["state"]["step"] in (3, 6), saved
    rc, _, _ = _run(cmd, env, tmp_path / "last.log", None, ckpt)
    assert rc == 0, (tmp_path / "last.log").read_text()[-3000:]
    print(f"kills: {hits}")
    # the last run went on from the checkpoint the kills left, not from step 0
    started = (tmp_path / "last.log").read_text().split(" parameters on ")[0]
    assert started.endswith((f"{ckpt}: step 3, 9.0 M", f"{ckpt}: step 6, 9.0 M"))
    trainer = json.loads((ckpt / "latest" / "trainer.json").read_text())
    assert (
        trainer["state"]["step"] == 6 and trainer["config"]["frames_per_batch"] == 160
    )
    evals = [json.loads(x) for x in (ckpt / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [3, 6]  # each checkpoint evaluated once
    lines = (ckpt / "log.jsonl").read_text().splitlines()
    logged = [json.loads(x)["step"] for x in lines]
    assert logged == [3, 6]  # each segment logged once, none repeated
    assert not [n for n in os.listdir(ckpt) if ".tmp-" in n or ".old-" in n]
    best = load_speecht5_voice.__wrapped__(str(ckpt / "best"))
    assert best.model.dims.n_state == 256
