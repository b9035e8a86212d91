"""What every `s2s` command shares: the environment it runs Prefect in, options
built from the parser, the checks made before Prefect starts, how a summary is
printed and how a command ends.

Options travel as the frozen dataclasses the stages use. An argument added with
`add_option(parser, "--flag", "<group>.<field>")` sets that field of the group's
dataclass, and `options_from_args` builds it: adding an option to a command is a
field in the dataclass and an argument in the parser, nothing in between.

Misuse (an `--out` that is a file, cannot be written, or holds another kind of
run; inputs that match nothing) is one line on stderr and exit status 2, never a
traceback. So is a run folder that is locked by another run or holds parts of
another schema version. SIGTERM and SIGINT end a command as `tasks.stage.shutdown`
describes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tasks.asr.sources import AUDIO_EXTENSIONS, MANIFEST_NAMES, is_local
from tasks.stage import RunLock, StageError, list_parts, read_stage_record

T = TypeVar("T")
QUIET_ENV = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
TRANSCRIPTION_KIND = "transcription"
TTS_KIND = "TTS dataset"
TRAINING_KIND = "TTS training"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def configure_env(verbose: bool) -> None:
    """Quiet, local Prefect unless the environment says otherwise."""
    for key, value in QUIET_ENV.items():
        if key == "PREFECT_LOGGING_LEVEL" and verbose:
            value = "INFO"
        os.environ.setdefault(key, value)
    if not verbose:  # Dask scheduler and worker processes read this too
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def add_option(
    parser: argparse.ArgumentParser, flag: str, field: str, **kwargs
) -> None:
    """An argument that sets `field` ("<group>.<name>") of an option dataclass.
    It is absent from the parsed namespace unless given, so the dataclass keeps its
    own default (`options_from_args`)."""
    parser.add_argument(flag, dest=field, default=argparse.SUPPRESS, **kwargs)


def options_from_args(args: argparse.Namespace, group: str, default: T) -> T:
    """`default` (a dataclass) with the fields the command line gave for `group`
    (arguments with `dest="<group>.<field>"`)."""
    prefix = f"{group}."
    given = {
        name.removeprefix(prefix): value
        for name, value in vars(args).items()
        if name.startswith(prefix)
    }
    return dataclasses.replace(default, **given)


def parse_size(text: str) -> int:
    """'4G', '500M', '2.5GiB', '1048576' -> bytes (binary units); for argparse."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (e.g. 4G, 500M, 1048576)"
        )
    number, unit = match.groups()
    size = int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))
    if size <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return size


def _run_kinds() -> dict:
    """Which stages make a run folder one kind of run (the folders `s2s` writes).
    Imported when needed: the stage modules bring the models' libraries."""
    from tasks.asr.evaluation import EVALUATION
    from tasks.asr.features import FEATURES
    from tasks.asr.ingest import INGEST
    from tasks.asr.transcripts import TRANSCRIPTS
    from tasks.tts.evaluation import TTS_STAGES

    return {
        TRANSCRIPTION_KIND: (INGEST, FEATURES, TRANSCRIPTS, EVALUATION),
        TTS_KIND: TTS_STAGES,
    }


def run_kind(folder: Path) -> str | None:
    """The kind of run `folder` holds, by what `s2s` writes there; None when it
    holds none (a new or unrelated folder)."""
    for kind, stages in _run_kinds().items():
        for stage in stages:
            if read_stage_record(folder, stage) is not None or list_parts(
                folder, stage
            ):
                return kind
    from tasks.tts.training.trainer import TRAINER_FILE

    if any((folder / name / TRAINER_FILE).exists() for name in ("latest", "best")):
        return TRAINING_KIND
    return None


def check_out_dir(out: str, kind: str) -> str | None:
    """Why `out` cannot be the run folder of a `kind` run (a file, not writable,
    another kind of run, locked by a run in progress), or None. Creates it."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        return f"--out {out} is a file, not a folder"
    if path.is_dir():
        found = run_kind(path)
        if found not in (None, kind):
            return (
                f"--out {out} holds a {found} run, not a {kind} run; use another folder"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write to --out {out}: {exc.strerror or exc}"
    try:  # taken again by the run; a scheduled run that finds it busy says so
        with RunLock(path):
            pass
    except StageError as exc:
        return str(exc)
    return None


def _holds_input(folder: str) -> bool:
    """Whether ingest finds anything under `folder` (stops at the first find)."""
    if any(os.path.exists(os.path.join(folder, n)) for n in MANIFEST_NAMES):
        return True
    for _, _dirs, files in os.walk(folder, followlinks=False):
        if any(os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS for f in files):
            return True
    return False


def check_inputs(inputs: list[str]) -> str | None:
    """Why the local `inputs` match nothing, or None (URIs are not checked here:
    listing object storage twice costs time, and discovery reports them)."""
    for uri in inputs:
        if not is_local(uri):
            continue
        path = uri.removeprefix("file://")
        if not os.path.lexists(path):  # a dangling symlink is a failed row instead
            return f"input {uri} matches nothing: no such file or folder"
        if os.path.isdir(path) and not _holds_input(path):
            return f"input {uri} matches nothing: no audio files and no manifest in it"
    return None


def emit(summary: dict, as_json: bool, printer: Callable[[dict], None]) -> None:
    """Print a run's summary: as JSON, or with `printer`."""
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        printer(summary)


def print_stages(stages: dict, width: int) -> None:
    """One line per stage report: rows done, skipped and removed, wall time."""
    for name, st in stages.items():
        failed = st["failed_shards"]
        print(
            f"stage {name:<{width}} new {st['n_todo']:>6}  skip {st['n_skipped']:>6}"
            f"  removed {st['n_removed']:>4}  {st['wall_s']:.1f} s"
            + (f"  FAILED SHARDS {len(failed)}" if failed else "")
        )


def exit_code(summary: dict) -> int:
    """0 when every stage ran all its shards (failed items are data, not errors)."""
    failed = any(s["failed_shards"] for s in summary["stages"].values())
    return 1 if failed else 0


def refuse(command: str, problem: str) -> int:
    print(f"s2s {command}: error: {problem}", file=sys.stderr)
    return 2


def run_command(command: str, func: Callable[[], int]) -> int:
    """Run a subcommand: a `StageError` (run folder locked, other schema version)
    is one line and status 2; a SIGINT that reached here after the flow stopped
    ends the process with 130, its child processes first."""
    from tasks.stage.shutdown import end_process_now, exit_on_signals

    exit_on_signals()
    try:
        return func()
    except StageError as exc:
        return refuse(command, str(exc))
    except KeyboardInterrupt:
        print(f"s2s {command}: stopped; rerun it to resume", file=sys.stderr)
        end_process_now(130)
