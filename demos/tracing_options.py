"""``--trace FILE`` and ``--trace-stderr`` for every demo, in one place.

``--trace FILE`` records a Chrome Trace Event file of the run (open it in
ui.perfetto.dev or chrome://tracing); ``--trace-stderr`` narrates each loop
event on stderr as it happens. Both are ordinary reactor instruments.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from typing import Any, Iterator, Optional

from reactor.tracing import ChromeTracer, StderrTracer


def add_trace_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", metavar="FILE",
                        help="record a Chrome trace of the loop to FILE (open it in ui.perfetto.dev)")
    parser.add_argument("--trace-stderr", action="store_true",
                        help="narrate every loop event on stderr")


@contextlib.contextmanager
def traced(reactor: Any, args: argparse.Namespace) -> Iterator[None]:
    """Install the tracers *args* asks for; write the trace file at the end.

    Enter it right after creating the reactor (``with Reactor() as reactor,
    traced(reactor, args):``) so that the trace shows the listening sockets
    being registered too.
    """
    chrome = ChromeTracer(args.trace) if getattr(args, "trace", None) else None
    if chrome is not None:
        reactor.add_instrument(chrome)
    if getattr(args, "trace_stderr", False):
        reactor.add_instrument(StderrTracer(clock=reactor.time))
    try:
        yield
    finally:
        if chrome is not None:
            reactor.remove_instrument(chrome)
            chrome.close()
            logging.getLogger("demos").info("trace written to %s (%d events)",
                                            args.trace, len(chrome.events))


def check_trace_file(args: argparse.Namespace) -> Optional[str]:
    """Create the ``--trace`` file now: a path that cannot be written is a
    one-line error at start, not a traceback at exit with the trace lost.
    Returns the error, or None."""
    path = getattr(args, "trace", None)
    if not path:
        return None
    try:
        with open(path, "w", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"cannot write the trace file {path}: {exc.strerror or exc}"
    return None
