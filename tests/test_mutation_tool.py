"""The mutation tool's own bookkeeping (tests/mutation.py): scores, equivalents, the report.

mutmut itself is an optional extra; these run without it.
"""

from __future__ import annotations

import argparse

import pytest

from tests import mutation
from tests.mutation import KILLED, NO_TESTS, SURVIVED, TIMEOUT, Outcome


def outcome(module="reactor/x.py", **statuses):
    return Outcome(module, statuses={f"reactor.x.f__mutmut_{name}": s for name, s in statuses.items()})


def test_score_counts_timeouts_as_caught_and_leaves_equivalents_out():
    o = outcome(**{"1": KILLED, "2": TIMEOUT, "3": SURVIVED, "4": SURVIVED, "5": "not checked"})
    mutation.judge(o, {"reactor.x.f__mutmut_4": "why"})
    assert o.equivalent == {"reactor.x.f__mutmut_4"}
    assert o.score == 2 / 3  # 2 caught; 3 run and not equivalent
    assert o.not_run == 1


def test_a_listed_mutant_that_is_killed_now_is_reported_stale():
    o = outcome(**{"1": KILLED, "2": NO_TESTS})
    mutation.judge(o, {"reactor.x.f__mutmut_1": "was equivalent", "reactor.x.f__mutmut_2": "no caller"})
    assert o.stale == {"reactor.x.f__mutmut_1"}
    assert o.equivalent == {"reactor.x.f__mutmut_2"}
    assert o.score == 1.0  # the killed one, of the one not equivalent


def test_the_equivalents_table_is_read_from_testing_md():
    listed = mutation.listed_equivalents()
    assert listed and all("__mutmut_" in name for name in listed)
    assert all(reason for reason in listed.values())


def test_markdown_table_has_a_row_per_module_and_a_total():
    a = outcome("reactor/a.py", **{"1": KILLED, "2": SURVIVED})
    b = outcome("reactor/b.py", **{"1": KILLED, "2": KILLED, "3": "not checked"})
    table = mutation.markdown([a, b]).splitlines()
    assert table[2] == "| `reactor/a.py` | 2 | 1 | 0 | 1 | 0 | 0 | **50.0%** |"
    assert table[3] == "| `reactor/b.py` | 3 | 2 | 0 | 0 | 0 | 1 | **100.0%** |"
    assert table[4] == "| all of `reactor/` | 5 | 3 | 0 | 1 | 0 | 1 | **75.0%** |"


def test_report_of_a_module_never_run_says_so(tmp_path):
    args = argparse.Namespace(workdir=tmp_path)
    o = mutation.last_run("reactor/buffers.py", args, {})
    assert o.error == "never run (no scratch copy)" and not o.statuses


@pytest.mark.parametrize("argv, message", [
    (["--markdown"], "--markdown goes with --report"),
    (["reactor/nothing.py"], "unknown module 'reactor/nothing.py'"),
    (["--time-limit", "0"], "--time-limit must be > 0"),
])
def test_bad_options_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mutation.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_mutant_that_crashes_the_tests_counts_as_killed():
    o = outcome(**{"1": "suspicious", "2": "segfault", "3": SURVIVED})
    mutation.judge(o, {})
    assert o.score == 2 / 3 and o.not_run == 0
    assert mutation.markdown([o]).splitlines()[2] == "| `reactor/x.py` | 3 | 2 | 0 | 1 | 0 | 0 | **66.7%** |"


def test_mutmuts_own_limit_comes_after_the_per_test_timeout(tmp_path):
    """A hung test must fail at pytest-timeout (killed), before mutmut's limit calls it a stuck run."""
    import configparser
    import shutil

    shutil.copy2(mutation.ROOT / "setup.cfg", tmp_path / "setup.cfg")
    mutation.configure("reactor/buffers.py", ["tests/test_buffers.py"], tmp_path, test_timeout=30)
    config = configparser.ConfigParser(interpolation=None)
    config.read(tmp_path / "setup.cfg")
    assert float(config["mutmut"]["timeout_constant"]) > 30
    assert "--timeout=30" in config["mutmut"]["pytest_add_cli_args"]
