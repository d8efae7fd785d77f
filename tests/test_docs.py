"""The Python examples in README.md and docs/TUTORIAL.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_readme_has_python_examples():
    assert python_blocks(ROOT / "README.md")


DOCS = ["README.md", "docs/TUTORIAL.md"]
EXAMPLES = [(doc, i) for doc in DOCS for i in range(len(python_blocks(ROOT / doc)))]


def test_tutorial_has_examples():
    assert len(python_blocks(ROOT / "docs/TUTORIAL.md")) >= 6


@pytest.mark.parametrize("doc, index", EXAMPLES, ids=[f"{d}-{i}" for d, i in EXAMPLES])
def test_doc_example_runs(doc, index, capsys):
    code = python_blocks(ROOT / doc)[index]
    exec(compile(code, f"{doc}[python block {index}]", "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out  # every example prints what it shows
