"""Shared test setup: an isolated Prefect home and one Prefect test harness.

Environment variables are set before Prefect is imported anywhere, so the tests
never touch the user's Prefect profile or a running server.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="s2s-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = REPO / "samples" / "speech"
BAD_AUDIO = FIXTURES / "bad_audio"


@pytest.fixture(scope="session")
def universal_hifigan():
    """(generator, config) of the bundled universal HiFi-GAN (`tts` extra); the
    test skips with the reason when the weights are not installed."""
    from s2s_models.vocoders.pretrained import (
        PretrainedMissing,
        pretrained_hifigan_files,
    )

    try:
        return pretrained_hifigan_files("universal")
    except PretrainedMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for every flow test in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


def mount_tmpfs(mount: Path, options: str) -> None:
    """Mount a tmpfs with `options` at `mount` (made if missing), or skip the test
    where this machine does not allow it. Unmount with `umount -l`."""
    mount.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


# ------------------------------------------------------------ required tests on CI
# A test marked `required` exercises a main job (transcribe, synthesize, train, the
# fault tests). On CI (CI=true) it must run: its skip fails the session, so a missing
# package or privilege cannot quietly turn the check off.
_required_skips: list[tuple[str, str]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    skipped = report.skipped and not hasattr(report, "wasxfail")
    if skipped and item.get_closest_marker("required") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        _required_skips.append((item.nodeid, str(reason)))


def pytest_terminal_summary(terminalreporter):
    if _required_skips and os.environ.get("CI") == "true":
        terminalreporter.section("required tests skipped on CI", sep="=", red=True)
        for nodeid, reason in _required_skips:
            terminalreporter.line(f"{nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _required_skips and os.environ.get("CI") == "true":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
