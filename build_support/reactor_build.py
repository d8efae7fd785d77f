"""The build backend: setuptools', plus mypy as a build requirement when compiling.

``REACTOR_COMPILE=1 pip install .`` (or ``-e .``) compiles the core modules
with mypyc (see setup.py); a plain install builds pure Python and needs only
setuptools. A static ``[build-system] requires`` cannot say "mypy, but only
when compiling", so this wrapper adds it to what setuptools asks for
(PEP 517's ``get_requires_for_build_*`` hooks exist for exactly this).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook we do not wrap)

# Kept in step with setup.py's COMPILE_REQUIRES (setup.py cannot import this module).
COMPILE_REQUIRES = ["mypy>=1.8"]


def compiling() -> bool:
    return os.environ.get("REACTOR_COMPILE", "").strip() not in ("", "0")


def _with_extra(hook: Any, config_settings: Optional[dict[str, Any]]) -> list[str]:
    """setuptools' requirements, plus mypy when compiling.

    setuptools runs setup.py to find its own requirements, before mypy is
    installed: ``REACTOR_BUILD_REQUIRES`` tells setup.py that this is that
    pass, so it does not look for mypyc yet.
    """
    os.environ["REACTOR_BUILD_REQUIRES"] = "1"
    try:
        requires = list(hook(config_settings))
    finally:
        del os.environ["REACTOR_BUILD_REQUIRES"]
    return requires + (list(COMPILE_REQUIRES) if compiling() else [])


def get_requires_for_build_wheel(config_settings: Optional[dict[str, Any]] = None) -> list[str]:
    return _with_extra(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings: Optional[dict[str, Any]] = None) -> list[str]:
    return _with_extra(_setuptools.get_requires_for_build_editable, config_settings)


def get_requires_for_build_sdist(config_settings: Optional[dict[str, Any]] = None) -> list[str]:
    return _setuptools.get_requires_for_build_sdist(config_settings)
