"""Build script: pure Python by default; ``REACTOR_COMPILE=1`` compiles the core with mypyc.

The metadata lives in setup.cfg. This file only decides whether the wheel
carries C extensions::

    python -m pip install .                      # pure Python (reactor.COMPILED is False)
    REACTOR_COMPILE=1 python -m pip install .    # the core compiled (reactor.COMPILED is True)

The compiled modules are built from the same source files, so the package
behaves the same either way (the test suite runs against both: .ci/run).
Protocols, instruments, framers and the errors stay interpreted: users
subclass them. ``REACTOR_COMPILE_OPT`` sets the C optimisation level
(mypyc's ``opt_level``, default 3).
"""

import os
import sys

from setuptools import setup

# The layers below the user's code: the loop, its handles and timers, the
# transports and the network front doors (see reactor/__init__.py).
COMPILED_MODULES = [
    "handles", "timers", "waker", "signals", "registry", "loop", "buffers",
    "transports", "streams", "datagrams", "listeners", "connectors", "network",
]


def compiling() -> bool:
    return os.environ.get("REACTOR_COMPILE", "").strip() not in ("", "0")


def ext_modules() -> list:
    # (REACTOR_BUILD_REQUIRES: the backend is only asking what to install;
    # see build_support/reactor_build.py.)
    if not compiling() or os.environ.get("REACTOR_BUILD_REQUIRES"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit("REACTOR_COMPILE=1 needs mypy (which provides mypyc): "
                 "python -m pip install 'mypy>=1.8', or let pip build in isolation")
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join("reactor", f"{name}.py") for name in COMPILED_MODULES]
    old = os.getcwd()
    os.chdir(here)  # mypyc wants paths relative to the project root
    try:
        return mypycify(paths, opt_level=os.environ.get("REACTOR_COMPILE_OPT", "3"))
    finally:
        os.chdir(old)


setup(ext_modules=ext_modules())
