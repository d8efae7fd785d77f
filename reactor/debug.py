"""Debug mode: the loop tells you what it would otherwise keep quiet.

``Reactor(debug=True)``, or ``REACTOR_DEBUG=1`` in the environment, turns on:

* **Slow callback warnings.** A callback that runs longer than
  ``reactor.slow_callback_duration`` (100 ms, asyncio's default) blocks every
  other connection for that long. The warning names the callback and shows
  where it was scheduled (the stack at ``call_soon``/``call_later``/
  ``add_reader``...), which is usually where the fix goes.
* **Unclosed transports.** ``close()`` of a reactor that still has open
  connections warns about each before closing it: a ``ResourceWarning``
  (for ``-W error``) and a line on the ``reactor`` logger (since Python
  hides ``ResourceWarning`` by default).
* **Traffic logging**, with ``REACTOR_DEBUG=traffic`` or
  ``Reactor(debug="traffic")``: every read and write logged at DEBUG level
  on the ``reactor.traffic`` logger, bytes included (truncated).

It is built from the same public pieces as any user tool: an ``Instrument``
for timing, and a weak map from handles to the stacks that created them, so
the normal path pays nothing when debug mode is off.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from .instruments import Instrument

__all__ = ["SlowCallbackWarner", "DEFAULT_SLOW_CALLBACK", "debug_setting", "log_traffic"]

logger = logging.getLogger("reactor")
traffic_logger = logging.getLogger("reactor.traffic")

DEFAULT_SLOW_CALLBACK = 0.1  # seconds; asyncio's slow_callback_duration
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def debug_setting(value: Any, environ: Any) -> tuple[bool, bool]:
    """(debug, log_traffic) from the constructor argument or REACTOR_DEBUG."""
    if value is None:
        value = environ.get("REACTOR_DEBUG", "")
    if isinstance(value, str):
        text = value.strip().lower()
        return text not in ("", "0", "false", "no", "off"), text == "traffic"
    return bool(value), False


class SlowCallbackWarner(Instrument):
    """Warns about callbacks slower than ``reactor.slow_callback_duration``."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def remember(self, handle: Any) -> None:
        """Record, on *handle*, where it was created: the caller's frames, not the reactor's own."""
        stack = traceback.extract_stack(limit=24)
        handle._origin = traceback.StackSummary.from_list(
            [frame for frame in stack if not frame.filename.startswith(_PACKAGE_DIR)][-4:])

    def after_callback(self, handle: Any, elapsed: float) -> None:
        if elapsed < self.reactor.slow_callback_duration:
            return
        source = getattr(handle, "_origin", None)
        where = "".join(traceback.format_list(source)) if source else "  (unknown)\n"
        # A transport's own callback (_on_readable...) is slow because of
        # its protocol's: name that, it is where the time went.
        owner = getattr(getattr(handle, "_callback", None), "__self__", None)
        protocol = getattr(owner, "_protocol", None)
        blame = f" in {type(protocol).__name__} of {owner!r}" if protocol is not None else ""
        logger.warning("slow callback: %r%s took %.3f s (threshold %.3f s); scheduled at:\n%s",
                       handle, blame, elapsed, self.reactor.slow_callback_duration, where.rstrip())


def log_traffic(transport: Any, received: bool, data: Any, n: int) -> None:
    """One read or send on the ``reactor.traffic`` logger (``BaseReactor.observe_io`` calls this).

    *data* holds (at least the start of) the *n* bytes; ``n == 0`` on a read
    is end of file. A transport that carries another layer (TLS) says which
    bytes these are in its repr.
    """
    shown = bytes(memoryview(data).cast("B")[:min(n, 64)])
    traffic_logger.debug("%r %s %d %sbytes%s %r%s", transport, "received" if received else "sent",
                         n, layer_of(transport), " (EOF)" if received and not n else "", shown,
                         "..." if n > 64 else "")


def layer_of(transport: Any) -> str:
    """"tls " for a stream transport carrying TLS records, "plaintext " for the
    TLS transport above it, "" for plain connections: so that logs and traces
    tell the two kinds of bytes of one TLS connection apart."""
    layer = getattr(transport, "layer", None)
    if layer is None:
        get_protocol = getattr(transport, "get_protocol", None)
        layer = getattr(get_protocol(), "carries", None) if get_protocol is not None else None
    return f"{layer} " if layer else ""
