"""python -m tests.mutation: its map of modules to tests, and the equivalents it reads.

The mutation runs themselves are not part of the suite (minutes per module;
docs/TESTING.md has the figures); this keeps the tool's inputs true as files
come and go.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from glob import glob
from pathlib import Path

from tests import mutation

ROOT = Path(__file__).resolve().parent.parent


def has_functions(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(tree))


def test_every_core_module_with_code_is_mapped_to_tests_that_exist():
    core = {str(p.relative_to(ROOT)) for p in (ROOT / "reactor").glob("*.py")
            if has_functions(p) and p.name != "__init__.py"}  # (its one function only imports)
    assert core <= set(mutation.MODULES), core - set(mutation.MODULES)
    assert "demos/chat/core.py" in mutation.MODULES
    for module, patterns in mutation.MODULES.items():
        assert (ROOT / module).exists(), module
        for pattern in patterns:
            assert glob(str(ROOT / pattern)), (module, pattern)
    assert set(mutation.QUICK) <= set(mutation.MODULES)


def test_the_equivalent_mutants_listed_in_testing_md_are_read_with_their_reasons():
    listed = mutation.listed_equivalents()
    assert listed  # docs/TESTING.md has the table
    for name, reason in listed.items():
        assert any(name.startswith(mutation.module_key(m) + ".") for m in mutation.MODULES), name
        assert "__mutmut_" in name and reason, (name, reason)


def test_the_command_line_refuses_an_unknown_module_and_lists_the_known_ones():
    bad = subprocess.run([sys.executable, "-m", "tests.mutation", "reactor/nope.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown module 'reactor/nope.py'" in bad.stderr
    assert "Traceback" not in bad.stderr
    listing = subprocess.run([sys.executable, "-m", "tests.mutation", "--list"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list(mutation.MODULES)
