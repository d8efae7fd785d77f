"""Mutation testing: plant small bugs in reactor/ and the chat core, count the ones the tests catch.

Run from the repository root (``pip install -e '.[test,mutation]'`` first)::

    python -m tests.mutation                      # every module below, 15 minutes each at most
    python -m tests.mutation --quick              # buffers, framing, timers: a few minutes
    python -m tests.mutation reactor/framing.py   # one module (or several)
    python -m tests.mutation --list               # the modules and the tests each one gets
    python -m tests.mutation reactor/loop.py --resume   # re-test the survivors, go on where it stopped

The tool is mutmut 3 (docs/TESTING.md says why). For each module this makes
a scratch copy of the repository in ``.mutation/<module>/`` (the working tree
is never touched, so an interrupted run leaves no mutant behind), writes a
``[mutmut]`` section into the copy's setup.cfg that mutates that module only
and selects the test files listed for it in ``MODULES``, and runs
``mutmut run`` there within ``--time-limit`` seconds. mutmut runs those files
once, records which tests call each function, and then runs, per mutant,
only the tests that call the mutated function, stopping at the first failure.

A mutant is *killed* when a test fails (a test that hangs fails too, at the
pytest-timeout given by ``--test-timeout``: see tests/timeouts.py), *timeout*
when mutmut's own CPU-time limit ended it, *survived* when every test
passed. Survivors judged equivalent (no observable change) are listed, with
the reason, in docs/TESTING.md's table of equivalent mutants, which this
script reads: the score is killed (timeouts included) over the mutants that
are not equivalent. Listed mutants that no longer survive are reported as
stale, so the list follows the code.

After a run, ``cd .mutation/<module> && mutmut show <name>`` shows a
mutant's diff; every survivor's diff is also in
``.mutation/<module>/survivors.txt``.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = ROOT / ".mutation"
TESTING_DOC = ROOT / "docs" / "TESTING.md"

# Module -> the test files that exercise it in this process (globs, from the
# repository root). mutmut narrows each mutant to the tests among these that
# call the mutated function; tests that reach a module only through a
# subprocess (the demos run as programs) cannot be traced, so they are left out.
MODULES: dict[str, list[str]] = {
    "reactor/buffers.py": ["tests/test_buffers.py", "tests/test_behaviours.py", "tests/test_streams.py"],
    "reactor/framing.py": ["tests/test_framing.py", "tests/test_behaviours.py", "tests/test_streams.py"],
    "reactor/timers.py": ["tests/test_timers.py", "tests/test_loop.py", "tests/test_instruments.py",
                          "tests/test_monitor.py"],
    "reactor/handles.py": ["tests/test_mutants_handles.py", "tests/test_loop.py", "tests/test_timers.py", "tests/test_io.py",
                           "tests/test_debug.py"],
    "reactor/waker.py": ["tests/test_mutants_waker.py", "tests/test_threadsafe.py", "tests/test_behaviours.py", "tests/test_signals.py",
                         "tests/test_loop.py"],
    "reactor/signals.py": ["tests/test_signals.py", "tests/test_mutants_signals.py"],
    "reactor/errors.py": ["tests/test_framing.py", "tests/test_streams.py", "tests/test_datagrams.py"],
    "reactor/protocols.py": ["tests/test_mutants_protocols.py", "tests/test_streams.py", "tests/test_behaviours.py",
                            "tests/test_framing.py"],
    "reactor/debug.py": ["tests/test_mutants_debug.py", "tests/test_debug.py"],
    "reactor/instruments.py": ["tests/test_mutants_instruments.py", "tests/test_instruments.py", "tests/test_debug.py",
                               "tests/test_monitor.py"],
    "reactor/monitor.py": ["tests/test_mutants_monitor.py", "tests/test_monitor.py"],
    "reactor/tracing.py": ["tests/test_mutants_tracing.py", "tests/test_tracing.py"],
    "reactor/testing.py": ["tests/test_mutants_testing.py", "tests/test_timers.py", "tests/test_instruments.py"],
    "reactor/registry.py": ["tests/test_structure.py", "tests/test_mutants_registry.py",
                            "tests/test_mutants_transports.py", "tests/test_instruments.py",
                            "tests/test_reliability.py", "tests/test_streams.py"],
    "reactor/loop.py": ["tests/test_loop.py", "tests/test_mutants_loop.py", "tests/test_io.py", "tests/test_threadsafe.py",
                        "tests/test_timers.py", "tests/test_signals.py", "tests/test_instruments.py",
                        "tests/test_debug.py", "tests/test_behaviours.py", "tests/test_reliability.py"],
    "reactor/transports.py": ["tests/test_streams.py", "tests/test_mutants_transports.py", "tests/test_mutants_streams.py",
                              "tests/test_mutants_datagrams.py", "tests/test_buffers.py", "tests/test_behaviours.py",
                              "tests/test_reliability.py", "tests/test_lifecycle_stateful.py",
                              "tests/test_datagrams.py", "tests/test_structure.py"],
    "reactor/streams.py": ["tests/test_streams.py", "tests/test_mutants_streams.py", "tests/test_mutants_transports.py",
                           "tests/test_buffers.py",
                           "tests/test_behaviours.py",
                           "tests/test_reliability.py", "tests/test_lifecycle_stateful.py",
                           "tests/test_instruments.py", "tests/test_debug.py"],
    "reactor/listeners.py": ["tests/test_streams.py", "tests/test_mutants_listeners.py", "tests/test_accept_limits.py", "tests/test_behaviours.py",
                             "tests/test_reliability.py"],
    "reactor/connectors.py": ["tests/test_streams.py", "tests/test_mutants_connectors.py", "tests/test_tls.py"],
    "reactor/tls.py": ["tests/test_tls.py", "tests/test_mutants_tls.py"],
    "reactor/tlsstreams.py": ["tests/test_tls.py", "tests/test_mutants_tlsstreams.py"],
    "reactor/datagrams.py": ["tests/test_datagrams.py", "tests/test_mutants_datagrams.py", "tests/test_reliability.py"],
    "reactor/network.py": ["tests/test_mutants_network.py", "tests/test_streams.py", "tests/test_datagrams.py", "tests/test_instruments.py",
                           "tests/test_accept_limits.py", "tests/test_tls.py"],
    # (test_chat_client.py and test_chat_irc.py drive the programs through tmux
    # and real IRC clients: nothing mutmut can trace, minutes of stats run.)
    "demos/chat/core.py": ["tests/test_mutants_chat_core.py", "tests/test_chat_core.py", "tests/test_chat.py"],
    "demos/chat/session.py": ["tests/test_mutants_chat_session.py", "tests/test_chat_core.py", "tests/test_chat_flood.py", "tests/test_chat.py"],
    "demos/chat/web_messages.py": ["tests/test_mutants_chat_web_messages.py", "tests/test_chat_web.py", "tests/test_chat_web_clients.py"],
}
# Tests left out when a module is mutated, because they cannot pass on
# mutmut's copy of the code even with no mutant active. Those of debug mode
# read the call stack (it names the caller's last frames), where each
# trampolined function adds two frames of mutmut's own.
DESELECT: dict[str, list[str]] = {
    # Every module: mypy would check mutmut's generated code, not ours.
    "*": ["tests/test_structure.py::test_mypy_strict_is_clean_and_the_package_is_typed"],
    "reactor/loop.py": ["tests/test_debug.py::test_slow_callbacks_are_named_with_their_origin",
                        "tests/test_debug.py::test_a_slow_protocol_is_named_and_threadsafe_callbacks_have_an_origin"],
}
# More pytest options for one module's runs. mutmut's "forced fail" check
# (every function of the module raises, and some test must fail) makes
# SignalHandlers raise inside BaseReactor.__init__ and close(), where no
# real call can raise: the waker's sockets leak, pytest turns that into an
# ExceptionGroup at the end of the session, and mutmut's process dies of it.
# Leaks still fail the tests of every other module.
PYTEST_ARGS: dict[str, list[str]] = {
    "reactor/signals.py": ["-p", "no:unraisableexception"],
}
# Lines not mutated (mutmut's do_not_mutate_patterns, regular expressions),
# so that the function holding them keeps no trampoline. BaseReactor.__del__
# runs inside the garbage collector, which can run inside the trampoline's own
# ContextVar.set (while mutmut records which tests call what): that re-entry
# crashed CPython 3.11 (a segmentation fault, every run, in test_loop.py after
# test_instruments.py left a reactor in a reference cycle).
NOT_MUTATED: dict[str, list[str]] = {
    "reactor/loop.py": [r'getattr\(self, "_closed", True\) and not self\._running',
                        r'warnings\.warn\(f"unclosed reactor \{self!r\}"',
                        r'^            self\.close\(\)$'],
}
# Sans-IO modules with fast tests: a smoke run of the whole machinery.
QUICK = ["reactor/buffers.py", "reactor/framing.py", "reactor/timers.py"]

# mutmut's verdicts, as `mutmut results` prints them.
KILLED, TIMEOUT, SURVIVED, NO_TESTS = "killed", "timeout", "survived", "no tests"
# A mutant whose tests' process died of a signal (mutmut: "segfault", or
# "suspicious" for another signal, e.g. a signal handler mutated to re-raise
# SIGUSR1 with its default action) was caught: counted as killed.
CRASHED = ("segfault", "suspicious")


@dataclass
class Outcome:
    module: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut's verdict
    equivalent: set[str] = field(default_factory=set)  # surviving, and listed as equivalent
    stale: set[str] = field(default_factory=set)  # listed as equivalent, but not surviving
    seconds: float = 0.0
    error: Optional[str] = None  # why the run did not finish
    command: str = ""

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.statuses.values() if s in statuses)

    @property
    def not_run(self) -> int:
        return len(self.statuses) - self.count(KILLED, *CRASHED, TIMEOUT, SURVIVED, NO_TESTS)

    @property
    def score(self) -> Optional[float]:
        """Killed (timeouts included) / mutants run that are not equivalent."""
        caught = self.count(KILLED, *CRASHED, TIMEOUT)
        judged = caught + self.count(SURVIVED, NO_TESTS) - len(self.equivalent)
        return caught / judged if judged else None


def listed_equivalents() -> dict[str, str]:
    """Mutant name -> reason, from the table of equivalent mutants in docs/TESTING.md."""
    if not TESTING_DOC.exists():
        return {}
    found = {}
    for line in TESTING_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[\w.ǁ]+__mutmut_\d+`", cells[0]):
            found[cells[0].strip("`")] = cells[-1]
    return found


def module_key(module: str) -> str:
    """The prefix of mutmut's names for this module's mutants: reactor/buffers.py -> reactor.buffers."""
    return module[:-3].replace("/", ".")


def prepare(module: str, tests: list[str], workdir: Path, test_timeout: float,
            deselect: tuple[str, ...] = (), not_mutated: tuple[str, ...] = (),
            extra: tuple[str, ...] = ()) -> None:
    """A scratch copy of the repository whose setup.cfg tells mutmut what to mutate and run."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", "mutants")
    for name in ("reactor", "demos", "tests", "docs"):  # (docs: test_structure reads the module map)
        shutil.copytree(ROOT / name, workdir / name, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy2(ROOT / name, workdir / name)
    configure(module, tests, workdir, test_timeout, deselect, not_mutated, extra)


def configure(module: str, tests: list[str], workdir: Path, test_timeout: float,
              deselect: tuple[str, ...] = (), not_mutated: tuple[str, ...] = (),
              extra: tuple[str, ...] = ()) -> None:
    """The [mutmut] section of the scratch copy's setup.cfg."""
    package = module.split("/")[0]
    other = "demos" if package == "reactor" else "reactor"
    config = configparser.ConfigParser(interpolation=None)
    config.read(workdir / "setup.cfg", encoding="utf-8")
    config.remove_section("mutmut")
    config["mutmut"] = {
        "source_paths": f"{package}/",
        "only_mutate": module,
        "also_copy": f"\n{other}/\ndocs/",
        "pytest_add_cli_args_test_selection": "\n" + "\n".join(tests),
        # A hung test fails at this timeout (a kill), before mutmut's CPU limit.
        "pytest_add_cli_args": f"\n-p\nno:cacheprovider\n--timeout={test_timeout:g}"
                               + "".join(f"\n--deselect\n{test}" for test in deselect)
                               + "".join(f"\n{arg}" for arg in extra),
        # mutmut's own limit (CPU seconds over the tests' usual time) must
        # come after the per-test timeout, so that a mutant that hangs a test
        # is reported by that test failing (killed), not as a stuck run.
        "timeout_constant": f"{test_timeout + 30:g}",
        "use_git_change_detection": "false",
    }
    if not_mutated:
        config["mutmut"]["do_not_mutate_patterns"] = "\n" + "\n".join(not_mutated)
    with open(workdir / "setup.cfg", "w", encoding="utf-8") as f:
        config.write(f)


def resumable(workdir: Path, module: str) -> bool:
    """Does *workdir* hold a run of this very module's code (verdicts that still hold)?"""
    mutated = workdir / module
    return ((workdir / "mutants").is_dir() and mutated.exists()
            and mutated.read_bytes() == (ROOT / module).read_bytes())


def refresh_tests(workdir: Path) -> None:
    """The working tree's tests (and docs) into a scratch copy whose mutants are kept.

    The module's test files may have grown too: mutmut would take a new
    selection for a reason to forget every verdict, so the selection's
    fingerprint in its stats is replaced by the new one (as mutmut computes
    it). Adding tests cannot revive a killed mutant; the survivors are
    re-tested (see run_module), and the new tests are traced to the functions
    they call as any new test is.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in ("tests", "docs"):
        shutil.rmtree(workdir / name, ignore_errors=True)
        shutil.copytree(ROOT / name, workdir / name, ignore=ignore)
    stats = workdir / "mutants" / "mutmut-stats.json"
    if stats.exists():
        code = ("import json; from mutmut.configuration import config; "
                "print(json.dumps(config().config_fingerprint()['test_selection']))")
        fingerprint = json.loads(subprocess.run([sys.executable, "-c", code], cwd=workdir, check=True,
                                                capture_output=True, text=True, timeout=120).stdout)
        data = json.loads(stats.read_text(encoding="utf-8"))
        data.setdefault("config_fingerprint", {})["test_selection"] = fingerprint
        stats.write_text(json.dumps(data), encoding="utf-8")


def run_mutmut(workdir: Path, jobs: int, time_limit: float, log: Path,
               names: Optional[list[str]] = None) -> Optional[str]:
    """``mutmut run`` in *workdir* for at most *time_limit* seconds; None, or why it did not finish.

    With *names*, only those mutants, whatever their last verdict.
    """
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *(names or [])]
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["HYPOTHESIS_PROFILE"] = "mutation"  # derandomized: the same examples for every mutant
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            status = proc.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return f"stopped at the time limit ({time_limit:g} s): the rest is 'not run'"
        except BaseException:
            _stop(proc)
            raise
    if status != 0:
        tail = log.read_text(errors="replace")[-2000:].replace("\r", "\n")
        return f"mutmut run exited with status {status}; its log ends:\n{tail}"
    return None


def _stop(proc: subprocess.Popen) -> None:
    """End mutmut and every worker it forked (they share its process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def read_results(workdir: Path, module: str) -> dict[str, str]:
    """mutmut's verdict on each of *module*'s mutants (``mutmut results --all true``)."""
    if not (workdir / "mutants").exists():
        return {}
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=workdir,
                         capture_output=True, text=True, timeout=300).stdout
    prefix = module_key(module) + "."
    results = {}
    for line in out.splitlines():
        match = re.fullmatch(r"\s*(\S+): (.+?)\s*", line)
        if match and match[1].startswith(prefix):
            results[match[1]] = match[2]
    return results


def write_survivors(workdir: Path, outcome: Outcome, equivalents: dict[str, str]) -> None:
    """Every surviving (or timed-out) mutant's diff, in survivors.txt, for the reader to judge."""
    with open(workdir / "survivors.txt", "w", encoding="utf-8") as f:
        for name, status in sorted(outcome.statuses.items()):
            if status in (SURVIVED, NO_TESTS, TIMEOUT):
                diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=workdir,
                                      capture_output=True, text=True, timeout=120).stdout
                note = f"  [equivalent: {equivalents[name]}]" if name in equivalents else ""
                f.write(f"## {name}: {status}{note}\n{diff}\n")


def run_module(module: str, args: argparse.Namespace, equivalents: dict[str, str]) -> Outcome:
    tests = sorted({path for pattern in MODULES[module]
                    for path in (glob(str(ROOT / pattern)) or [str(ROOT / pattern)])})
    tests = [str(Path(t).relative_to(ROOT)) for t in tests if Path(t).exists()]
    workdir = args.workdir / Path(module).stem
    outcome = Outcome(module, command=f"mutmut run --max-children {args.jobs}  (in {workdir})")
    started = time.monotonic()
    if not tests:
        outcome.error = "none of its test files exists"
        return outcome
    again: list[str] = []
    if args.resume and resumable(workdir, module):
        # The verdicts stand; the tests may have grown: re-test the survivors
        # (and the stuck runs, which may now fail at the per-test timeout),
        # then go on with the mutants not run yet.
        again = sorted(n for n, s in read_results(workdir, module).items() if s in (SURVIVED, NO_TESTS, TIMEOUT))
        configure(module, tests, workdir, args.test_timeout, tuple(DESELECT["*"] + DESELECT.get(module, [])),
                  tuple(NOT_MUTATED.get(module, [])), tuple(PYTEST_ARGS.get(module, [])))
        refresh_tests(workdir)
        outcome.command += f", resumed ({len(again)} survivors and timeouts re-tested)"
    else:
        prepare(module, tests, workdir, args.test_timeout, tuple(DESELECT["*"] + DESELECT.get(module, [])),
                tuple(NOT_MUTATED.get(module, [])), tuple(PYTEST_ARGS.get(module, [])))
    log = workdir / "mutmut.log"
    if again:
        outcome.error = run_mutmut(workdir, args.jobs, args.time_limit, log, again)
    left = args.time_limit - (time.monotonic() - started)
    if not outcome.error and left > 0:
        outcome.error = run_mutmut(workdir, args.jobs, left, log)
    elif not outcome.error:
        outcome.error = f"stopped at the time limit ({args.time_limit:g} s): the rest is 'not run'"
    outcome.statuses = read_results(workdir, module)
    outcome.seconds = time.monotonic() - started
    judge(outcome, equivalents)
    write_survivors(workdir, outcome, equivalents)
    return outcome


def judge(outcome: Outcome, equivalents: dict[str, str]) -> None:
    """Which survivors are listed as equivalent, and which listed ones no longer survive."""
    listed = {name for name in equivalents if name.startswith(module_key(outcome.module) + ".")}
    outcome.equivalent = {n for n in listed if outcome.statuses.get(n) in (SURVIVED, NO_TESTS)}
    # (A listed mutant not run, at a time limit, is neither.)
    outcome.stale = {n for n in listed - outcome.equivalent
                     if outcome.statuses.get(n, KILLED) in (KILLED, *CRASHED, TIMEOUT)}


def last_run(module: str, args: argparse.Namespace, equivalents: dict[str, str]) -> Outcome:
    """The verdicts of a module's last run, read from its scratch copy; nothing is run."""
    workdir = args.workdir / Path(module).stem
    outcome = Outcome(module, command=f"(last run, in {workdir})")
    if not (workdir / "mutants").is_dir():
        outcome.error = "never run (no scratch copy)"
        return outcome
    if not resumable(workdir, module):
        outcome.error = "its code changed since the last run: these verdicts are stale"
    outcome.statuses = read_results(workdir, module)
    judge(outcome, equivalents)
    return outcome


def markdown(outcomes: list[Outcome]) -> str:
    """The per-module table of docs/TESTING.md."""
    lines = ["| module | mutants | killed | timeout | survived | equivalent | not run | score |",
             "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        score = f"**{o.score:.1%}**" if o.score is not None else "-"
        surviving = o.count(SURVIVED, NO_TESTS) - len(o.equivalent)
        lines.append(f"| `{o.module}` | {len(o.statuses)} | {o.count(KILLED, *CRASHED)} | {o.count(TIMEOUT)} | "
                     f"{surviving} | {len(o.equivalent)} | {o.not_run} | {score} |")
    for label, package in (("all of `reactor/`", "reactor/"), ("the chat core", "demos/")):
        group = [o for o in outcomes if o.module.startswith(package)]
        total = Outcome("all", statuses={f"{o.module}:{n}": s for o in group for n, s in o.statuses.items()},
                        equivalent={f"{o.module}:{n}" for o in group for n in o.equivalent})
        if len(group) > 1 and total.score is not None:
            surviving = total.count(SURVIVED, NO_TESTS) - len(total.equivalent)
            lines.append(f"| {label} | {len(total.statuses)} | {total.count(KILLED, *CRASHED)} | "
                         f"{total.count(TIMEOUT)} | {surviving} | {len(total.equivalent)} | {total.not_run} | "
                         f"**{total.score:.1%}** |")
    return "\n".join(lines)


def report(outcomes: list[Outcome]) -> str:
    header = (f"{'module':<24} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
              f"{'equiv.':>6} {'no tests':>8} {'not run':>7} {'score':>6} {'time':>6}")
    lines = [header, "-" * len(header)]
    for o in outcomes:
        score = f"{o.score:.1%}" if o.score is not None else "-"
        surviving = o.count(SURVIVED) - len(o.equivalent & {n for n, s in o.statuses.items() if s == SURVIVED})
        no_tests = o.count(NO_TESTS) - len(o.equivalent & {n for n, s in o.statuses.items() if s == NO_TESTS})
        lines.append(f"{o.module:<24} {len(o.statuses):>7} {o.count(KILLED, *CRASHED):>6} {o.count(TIMEOUT):>7} "
                     f"{surviving:>8} {len(o.equivalent):>6} {no_tests:>8} {o.not_run:>7} {score:>6} "
                     f"{o.seconds:>5.0f}s")
    total = Outcome("all", statuses={f"{o.module}:{n}": s for o in outcomes for n, s in o.statuses.items()},
                    equivalent={f"{o.module}:{n}" for o in outcomes for n in o.equivalent})
    if len(outcomes) > 1 and total.score is not None:
        lines.append(f"{'all':<24} {len(total.statuses):>7} {total.count(KILLED, *CRASHED):>6} "
                     f"{total.count(TIMEOUT):>7} {'':>8} {len(total.equivalent):>6} {'':>8} "
                     f"{total.not_run:>7} {total.score:>6.1%}")
    lines.append("survived: every test passed (equivalent ones are counted apart); no tests: no "
                 "selected test calls the function; score: (killed + timeout) / (mutants run - equivalent)")
    for o in outcomes:
        if o.error:
            lines.append(f"{o.module}: {o.error}")
        if o.stale:
            lines.append(f"{o.module}: listed as equivalent in docs/TESTING.md but not surviving "
                         f"(stale, remove or renumber): {', '.join(sorted(o.stale))}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation",
                                     description=__doc__.split("\n")[0],
                                     epilog="See docs/TESTING.md, 'Mutation testing'.")
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help="paths such as reactor/buffers.py (default: every module listed by --list)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK)}, with --time-limit 300 unless given")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="per module; what has not run by then is reported as 'not run' "
                             "(default: 900, or 300 with --quick)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: the number of CPUs)")
    parser.add_argument("--test-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="pytest-timeout per test under a mutant (default: 30)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR,
                        help="where the scratch copies go (default: .mutation/)")
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PERCENT",
                        help="exit with status 1 if a module scores below this (default: 0, never)")
    parser.add_argument("--resume", action="store_true",
                        help="keep a module's last run (if its code is unchanged): re-test its survivors "
                             "with the current tests, then run the mutants not run yet")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests, and exit")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: report each module's last run (its scratch copy) with the "
                             "equivalents listed now")
    parser.add_argument("--markdown", action="store_true",
                        help="with --report: also print the table as Markdown (docs/TESTING.md)")
    args = parser.parse_args(argv)

    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from: {', '.join(MODULES)}")
    if args.time_limit is not None and args.time_limit <= 0:
        parser.error("--time-limit must be > 0")
    if args.jobs < 1 or args.test_timeout <= 0:
        parser.error("--jobs must be >= 1 and --test-timeout > 0")
    if args.markdown and not args.report:
        parser.error("--markdown goes with --report")
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module:<24} {' '.join(tests)}{'  (--quick)' if module in QUICK else ''}")
        return 0
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("python -m tests.mutation: mutmut is not installed; "
              "pip install -e '.[test,mutation]'", file=sys.stderr)
        return 2
    modules = args.modules or (QUICK if args.quick else list(MODULES))
    if args.time_limit is None:
        args.time_limit = 300.0 if args.quick else 900.0
    args.workdir = args.workdir.resolve()

    equivalents = listed_equivalents()
    if args.report:
        outcomes = [last_run(module, args, equivalents) for module in modules]
        print(report(outcomes))
        if args.markdown:
            print()
            print(markdown(outcomes))
        return 0
    outcomes = []
    print(f"mutation testing {len(modules)} module(s) with mutmut, {args.jobs} at once, "
          f"{args.time_limit:g} s at most each; scratch copies in {args.workdir}", flush=True)
    for module in modules:
        print(f"== {module}: {' '.join(MODULES[module])}", flush=True)
        outcome = run_module(module, args, equivalents)
        outcomes.append(outcome)
        score = f"{outcome.score:.1%}" if outcome.score is not None else "-"
        print(f"   {len(outcome.statuses)} mutants, {outcome.count(KILLED, *CRASHED)} killed, "
              f"{outcome.count(TIMEOUT)} timeout, {outcome.count(SURVIVED)} survived "
              f"({len(outcome.equivalent)} equivalent), score {score}, {outcome.seconds:.0f} s"
              + (f"; {outcome.error.splitlines()[0]}" if outcome.error else ""), flush=True)
    print()
    print(report(outcomes))
    below = [o for o in outcomes if o.score is not None and o.score * 100 < args.fail_under]
    errors = [o for o in outcomes if o.error and not o.statuses]
    return 1 if below or errors else 0


if __name__ == "__main__":
    sys.exit(main())
