"""The Python examples in README.md and docs/TUTORIAL.md run as written."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
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


# A python block, then (in the tutorial) "It prints:" and the expected output.
PRINTS = re.compile(r"^```python\n(.*?)^```\n\s*It prints:\n\s*```text\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("doc, index", EXAMPLES, ids=[f"{d}-{i}" for d, i in EXAMPLES])
def test_doc_example_runs(doc, index, tmp_path):
    """As the tutorial tells a reader: saved as a file, run with python3 (the
    repository root on the path, as when the file is saved there)."""
    code = python_blocks(ROOT / doc)[index]
    script = tmp_path / f"step{index + 1}.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-W", "error::ResourceWarning", str(script)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    out = result.stdout
    assert out  # every example prints what it shows
    expected = dict(PRINTS.findall((ROOT / doc).read_text(encoding="utf-8")))
    if doc == "docs/TUTORIAL.md":
        assert code in expected, "every tutorial program shows what it prints"
    if code in expected:
        checker = doctest.OutputChecker()
        assert checker.check_output(expected[code], out, doctest.ELLIPSIS), (
            f"{doc} block {index} printed:\n{out}\nbut the text says:\n{expected[code]}")


def marked_command(marker: str) -> str:
    """The one line in the fenced block after ``<!-- marker -->`` in README.md (as .ci/run reads it)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(f"<!-- {marker} -->", 1)[1].split("```", 2)[1]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_readme_demo_command_starts_the_chat_server_on_the_port_it_names():
    import shlex
    import subprocess
    import sys

    argv = shlex.split(marked_command("demo-command"))
    assert argv[:3] == ["python3", "-m", "demos.chat_server"], argv
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    help_text = subprocess.run([sys.executable, *argv[1:], "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=30).stdout
    assert "(default: 7000)" in help_text and "127.0.0.1:7000" in readme and "nc 127.0.0.1 7000" in readme
    # As written, on a free port instead of 7000 (which may be taken here).
    proc = subprocess.Popen([sys.executable, *argv[1:], "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on 127.0.0.1:")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
