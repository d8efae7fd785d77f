"""Helpers for testing code that runs on a reactor, without waiting for real time.

``VirtualClock`` is Twisted's ``task.Clock`` idea in its smallest form: a clock
that moves only when told. Pass it as ``Reactor(clock=...)``, call
``advance(seconds)``, then ``reactor.run_once(0)`` to run what became due.
"""

from __future__ import annotations

__all__ = ["VirtualClock"]


class VirtualClock:
    """A monotonic clock that only moves when ``advance()`` is called."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now += seconds
        return self._now
