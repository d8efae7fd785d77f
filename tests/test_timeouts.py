"""No test can hang: hung tests fail within their own timeout, and the run goes on.

Each check runs pytest in a subprocess, with this project's setup.cfg and
tests/timeouts.py, on a planted test file, and a deadline of its own: a run
that hung would fail this test by ``subprocess.TimeoutExpired``, not hang it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 1.0  # the planted tests' pytest-timeout, in seconds
DEADLINE = 60.0  # for a whole planted run (each one ends in a few seconds)

PLANTED = '''
import select
import selectors

import pytest

from reactor import Reactor

SELECTORS = [getattr(selectors, name) for name in ("SelectSelector", "PollSelector", "EpollSelector")
             if hasattr(selectors, name)]


def test_spins_in_python():
    while True:
        pass


def test_blocks_in_poll():
    select.poll().poll()  # nothing registered, no timeout: forever


@pytest.mark.parametrize("selector", SELECTORS, ids=lambda cls: cls.__name__)
def test_reactor_blocks_in_select(selector):
    with Reactor(selector=selector()) as reactor:
        reactor.run_once()  # nothing to do: waits MAX_SELECT_TIMEOUT (a day)


def test_spins_inside_a_reactor_callback():
    # The loop's error boundary catches the timeout's exception (a
    # BaseException) and goes on: the spin ends, then the loop blocks.
    swallowed = []
    with Reactor() as reactor:
        reactor.set_exception_handler(lambda r, context: swallowed.append(context))

        def spin():
            while True:
                pass

        reactor.call_soon(spin)
        reactor.run_once(0)
        reactor.run_once()


def test_busy_loop_of_callbacks():
    with Reactor() as reactor:
        reactor.set_exception_handler(lambda r, context: None)

        def again():  # nearly all the time in callbacks: most alarms land in one
            reactor.call_soon(again)
            for _ in range(10_000):
                pass

        reactor.call_soon(again)
        reactor.run()


def test_still_runs_after_the_hung_ones():
    assert True
'''

SWALLOWS_FOREVER = '''
def test_swallows_every_exception_forever():
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass


def test_never_reached():
    pass
'''


def run_planted(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess, float]:
    """pytest, as the suite runs it (setup.cfg, tests/timeouts.py), on *source*, with TIMEOUT."""
    (tmp_path / "test_planted.py").write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTEST_TIMEOUT", None)
    env.pop("PYTEST_ADDOPTS", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "setup.cfg"), "--rootdir", str(tmp_path),
         "-p", "tests.timeouts", "-p", "no:cacheprovider", f"--timeout={TIMEOUT}", "-q",
         "-W", "ignore::pytest.PytestUnraisableExceptionWarning", "test_planted.py"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=DEADLINE)
    return result, time.monotonic() - started


def test_setup_cfg_chooses_the_signal_method():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["tool:pytest"]["timeout_method"].strip() == "signal"


def test_spinning_and_blocked_tests_fail_and_the_run_goes_on(tmp_path):
    result, elapsed = run_planted(tmp_path, PLANTED)
    out = result.stdout + result.stderr
    failed = sorted(re.findall(r"^FAILED test_planted\.py::(\S+)", result.stdout, re.M))
    selectors_ = re.findall(r"test_reactor_blocks_in_select\[(\w+)\]", " ".join(failed))
    assert result.returncode == 1, out
    assert [name for name in failed if "[" not in name] == [
        "test_blocks_in_poll", "test_busy_loop_of_callbacks", "test_spins_in_python",
        "test_spins_inside_a_reactor_callback"], out
    assert selectors_ and len(failed) == 4 + len(selectors_), out
    assert re.search(rf"\b{len(failed)} failed, 1 passed\b", result.stdout), out
    assert out.count(f"Timeout (>{TIMEOUT:g}s) from pytest-timeout") >= len(failed), out
    # Each hung test costs about its timeout (the swallowed one a repeat more),
    # plus interpreter start-up: nowhere near a stuck run.
    assert elapsed < len(failed) * (TIMEOUT + 1.5) + 15, (elapsed, out)


def test_a_test_that_swallows_every_timeout_ends_the_run_at_the_watchdog(tmp_path):
    result, elapsed = run_planted(tmp_path, SWALLOWS_FOREVER)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "test_swallows_every_exception_forever still running" in out, out
    assert "test_swallows_every_exception_forever" in out and "Current thread" in out, out
    assert elapsed < 2 * TIMEOUT + 15, (elapsed, out)
