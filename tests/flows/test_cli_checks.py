"""Misuse of `s2s` is one line on stderr and exit status 2, found before any run
starts: nothing is written and no traceback is shown."""

from __future__ import annotations

import signal
import subprocess

import pytest

from flows.cli import main
from tasks.asr.ingest import INGEST
from tasks.stage import RunLock, StageSpec, write_stage_record
from tasks.tts.requests import TTS_REQUESTS
from tests.conftest import SAMPLES, mount_tmpfs


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """`main` installs its own SIGTERM/SIGINT handlers; give pytest its back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def _stage_folder(run, stage: StageSpec):
    (run / stage.name).mkdir(parents=True)
    write_stage_record(run, stage, {})


def test_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("keep me")
    err = _refused(capsys, ["transcribe", str(SAMPLES), "--out", str(out)])
    assert err == f"s2s transcribe: error: --out {out} is a file, not a folder"
    assert out.read_text() == "keep me"


def test_out_holds_another_kind_of_run(tmp_path, capsys):
    tts_run, asr_run = tmp_path / "tts", tmp_path / "asr"
    _stage_folder(tts_run, TTS_REQUESTS)
    _stage_folder(asr_run, INGEST)
    err = _refused(capsys, ["ingest", str(SAMPLES), "--out", str(tts_run)])
    assert err == (
        f"s2s ingest: error: --out {tts_run} holds a TTS dataset run, not a "
        "transcription run; use another folder"
    )
    texts = tmp_path / "texts.txt"
    texts.write_text("One sentence.\n")
    err = _refused(capsys, ["synthesize", str(texts), "--out", str(asr_run)])
    assert err == (
        f"s2s synthesize: error: --out {asr_run} holds a transcription run, not a "
        "TTS dataset run; use another folder"
    )
    assert not (tts_run / "ingest").exists() and not (asr_run / "mels").exists()


def test_inputs_that_match_nothing(tmp_path, capsys):
    missing, out = tmp_path / "no-such-folder", str(tmp_path / "r")
    err = _refused(capsys, ["transcribe", str(missing), "--out", out])
    assert err == (
        f"s2s transcribe: error: input {missing} matches nothing: no such file or "
        "folder"
    )
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no audio here")
    err = _refused(capsys, ["ingest", str(tmp_path / "empty"), "--out", out])
    assert err.endswith("matches nothing: no audio files and no manifest in it")
    assert not (tmp_path / "r").exists()


def test_out_folder_in_use_by_another_run(tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):
        err = _refused(capsys, ["ingest", str(SAMPLES), "--out", str(run)])
    assert err.startswith(f"s2s ingest: error: run folder {run} is in use by pid ")


def test_unwritable_out_folder(tmp_path, capsys):
    mount = tmp_path / "readonly"
    mount_tmpfs(mount, "ro,size=64k")
    try:
        err = _refused(capsys, ["ingest", str(SAMPLES), "--out", str(mount / "run")])
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert err == (
        f"s2s ingest: error: cannot write to --out {mount / 'run'}: Read-only file "
        "system"
    )


def test_decoding_flags_reach_the_options():
    """Flags set their TranscribeOptions fields; absent ones keep its defaults."""
    from flows.cli import build_parser
    from flows.cli_common import options_from_args
    from flows.transcribe_corpus import DEFAULT_DECODING

    parse = build_parser().parse_args
    args = parse(["transcribe", "x.wav", "--out", "r", "--no-rescore-silences"])
    options = options_from_args(args, "decoding", DEFAULT_DECODING)
    assert options.rescore_silences is False
    assert options.vad_threshold == DEFAULT_DECODING.vad_threshold
    args = parse(["transcribe", "x.wav", "--out", "r", "--vad-threshold", "0.5"])
    options = options_from_args(args, "decoding", DEFAULT_DECODING)
    assert options.rescore_silences is True and options.vad_threshold == 0.5
