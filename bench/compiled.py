"""The mypyc-compiled build of reactor, made on the fly for ``bench.echo``'s ``reactor-compiled`` row.

    python -m bench.compiled          # build (or find) it; print where, or why not

The same source as the checkout, compiled the way ``REACTOR_COMPILE=1 pip
install .`` compiles it (setup.py), but without installing anything: the
package and the build files are copied to a new directory and built there in
place (``setup.py build_ext --inplace``), with this interpreter's mypy and
setuptools. A server started with that directory first on its path (and as
its working directory) imports the compiled ``reactor``; ``bench.servers
--expect-compiled`` refuses to serve if it did not.

The result is kept in the benchmarks' cache directory (``~/.cache/reactor-
bench/``, or a temporary one), named by a hash of every source file, the
interpreter and mypy's version: a changed source builds anew, an unchanged
one is built once (about 30 s on 2 cores), and only the last three builds
are kept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from bench._proc import ROOT

# What setup.py needs besides the package (setup.cfg reads README and LICENSE).
BUILD_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE")
BUILD_DIRS = ("build_support",)


def _cache_dirs() -> list[Path]:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [Path(base) / "reactor-bench", Path(tempfile.gettempdir()) / f"reactor-bench-{uid}"]


def _tag() -> str:
    import mypy.version

    digest = hashlib.sha256()
    for path in sorted((ROOT / "reactor").glob("*.py")) + [ROOT / "setup.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(f"{sys.version} {platform.machine()} mypy {mypy.version.__version__}".encode())
    return digest.hexdigest()[:16]


def missing() -> Optional[str]:
    """Why this interpreter cannot build it, or None."""
    for module, package in (("mypyc", "mypy"), ("setuptools", "setuptools")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install {package}, or the 'bench' extra)"
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if compiler is None:
        return "no C compiler found (cc, gcc, clang)"
    import sysconfig

    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return f"no Python.h for Python {platform.python_version()} (the python3-dev package)"
    return None


def cached() -> Optional[Path]:
    """The build for the current sources, if one was made already."""
    if missing():
        return None
    tag = _tag()
    for directory in _cache_dirs():
        build = directory / f"compiled-{tag}"
        if (build / "reactor").is_dir():
            return build
    return None


def build(timeout: float = 600) -> tuple[Optional[Path], str]:
    """(directory to import the compiled reactor from, or None; what happened)."""
    why = missing()
    if why:
        return None, why
    found = cached()
    if found is not None:
        return found, f"{found} (cached)"
    tag = _tag()
    errors = []
    for directory in _cache_dirs():
        final = directory / f"compiled-{tag}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".compiled-{tag}-", dir=directory))
        except OSError as exc:
            errors.append(f"{directory}: {exc}")
            continue
        try:
            shutil.copytree(ROOT / "reactor", work / "reactor",
                            ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
            for name in BUILD_FILES:
                shutil.copy2(ROOT / name, work / name)
            for name in BUILD_DIRS:
                shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            env = dict(os.environ, REACTOR_COMPILE="1")
            proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=work,
                                  env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                return None, f"the build failed: {(proc.stderr or proc.stdout).strip()[-800:]}"
            check = subprocess.run([sys.executable, "-c", "import reactor; print(reactor.COMPILED)"],
                                   cwd=work, capture_output=True, text=True, timeout=60)
            if check.stdout.strip() != "True":
                return None, f"built, but reactor.COMPILED is not True there: {check.stdout}{check.stderr}"
            shutil.rmtree(work / "build", ignore_errors=True)  # the objects; the .so files stay
            try:
                os.rename(work, final)  # atomic: a concurrent run sees a whole build or none
            except OSError:
                if not (final / "reactor").is_dir():
                    raise
                shutil.rmtree(work, ignore_errors=True)  # another run got there first
            _prune(directory, keep=final)
            return final, f"{final} (compiled now)"
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{directory}: {exc}")
        finally:
            if work.exists() and work != final:
                shutil.rmtree(work, ignore_errors=True)
    return None, "cannot build: " + "; ".join(errors)


def _prune(directory: Path, keep: Path, newest: int = 3) -> None:
    """Drop all but the *newest* builds of earlier sources (each is a few MiB)."""
    builds = sorted((p for p in directory.glob("compiled-*") if p != keep and p.is_dir()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[newest - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def main() -> int:
    path, note = build()
    print(note if path is None else f"compiled reactor in {path}: {note}")
    return 0 if path is not None else 1


if __name__ == "__main__":
    sys.exit(main())
