"""Debug mode: the loop tells you what it would otherwise keep quiet.

``Reactor(debug=True)``, or ``REACTOR_DEBUG=1`` in the environment, turns on:

* **Slow callback warnings.** A callback that runs longer than
  ``reactor.slow_callback_duration`` (100 ms, asyncio's default) blocks every
  other connection for that long. The warning names the callback and shows
  where it was scheduled (the stack at ``call_soon``/``call_later``/
  ``add_reader``...), which is usually where the fix goes.
* **Unclosed transports.** ``close()`` of a reactor that still has open
  connections warns about each (``ResourceWarning``) before closing it.
* **Traffic logging**, with ``REACTOR_DEBUG=traffic`` or
  ``Reactor(debug="traffic")``: every read and write logged at DEBUG level
  on the ``reactor.traffic`` logger, bytes included (truncated).

It is built from the same public pieces as any user tool: an ``Instrument``
for timing, and a weak map from handles to the stacks that created them, so
the normal path pays nothing when debug mode is off.
"""

from __future__ import annotations

import logging
import traceback
import weakref
from typing import Any, Optional

from .instruments import Instrument

__all__ = ["SlowCallbackWarner", "DEFAULT_SLOW_CALLBACK", "debug_setting"]

logger = logging.getLogger("reactor")
traffic_logger = logging.getLogger("reactor.traffic")

DEFAULT_SLOW_CALLBACK = 0.1  # seconds; asyncio's slow_callback_duration


def debug_setting(value: Any, environ: Any) -> tuple[bool, bool]:
    """(debug, log_traffic) from the constructor argument or REACTOR_DEBUG."""
    if value is None:
        value = environ.get("REACTOR_DEBUG", "")
    if isinstance(value, str):
        text = value.strip().lower()
        return text not in ("", "0", "false", "no"), text == "traffic"
    return bool(value), False


class SlowCallbackWarner(Instrument):
    """Warns about callbacks slower than ``reactor.slow_callback_duration``."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.sources: "weakref.WeakKeyDictionary[Any, traceback.StackSummary]" = weakref.WeakKeyDictionary()

    def remember(self, handle: Any) -> None:
        """Record where *handle* was created (skipping the reactor's own frames)."""
        stack = traceback.extract_stack(limit=12)[:-2]
        self.sources[handle] = stack

    def after_callback(self, handle: Any, elapsed: float) -> None:
        if elapsed < self.reactor.slow_callback_duration:
            return
        source = self.sources.get(handle)
        where = "".join(traceback.format_list(source[-4:])) if source else "  (unknown)\n"
        logger.warning("slow callback: %r took %.3f s (threshold %.3f s); scheduled at:\n%s",
                       handle, elapsed, self.reactor.slow_callback_duration, where.rstrip())


def log_traffic(transport: Any, direction: str, data: Optional[bytes], n: int) -> None:
    shown = repr(bytes(data[:64])) + ("..." if len(data) > 64 else "") if data is not None else ""
    traffic_logger.debug("%r %s %d bytes %s", transport, direction, n, shown)
