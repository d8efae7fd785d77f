"""What the demos share on the command line: one-line error messages, checked option values."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn


def why(exc: OSError) -> str:
    """The bare reason for *exc*, such as "Address already in use".

    The demos' messages name the address themselves; reactor's
    ``listen_tcp`` names it in its message too, and ``socket.create_server``
    adds "(while attempting to bind on address ...)". A failed name lookup
    (``socket.gaierror``) has a negative errno and its own message.
    """
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return (exc.strerror or str(exc)).partition(" (while attempting")[0]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2.

    argparse prints the whole usage block before the error; for a server
    started by a script or a supervisor, the one line that says what is
    wrong is what matters (``--help`` still shows the usage).
    """

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (pick a free one) to 65535."""
    value = int(_number(int, text, "a port number"))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(_number(int, text, "an integer"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(int, text, "an integer"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(float, text, "a number"))
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(_number(float, text, "a number"))
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def _number(kind: Any, text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
