"""Handles: one scheduled call, and the only thing the loop ever runs.

Theory of operation
-------------------
Everything the reactor does ends in running a handle: a ``call_soon``, a timer
firing, a readable socket, a signal. A handle is a callback plus its arguments
plus a *cancelled* bit. Cancelling never searches a queue to remove the handle;
it flips the bit and drops the references to the callback and arguments (so a
cancelled timer holding a large object does not keep it alive). Whoever later
pops the handle (the ready queue, the timer heap, a stale selector event)
checks the bit and skips it. That one rule is what makes cancellation O(1)
and what stops a stale I/O event from reaching a callback that was removed
earlier in the same batch.

The loop runs ``handle._callback(*handle._args)`` inside the error boundary
of the whole library (step 5 of ``BaseReactor._run_once``, the one place any handle
runs): an ``Exception`` raised by user code goes to ``handle._report``, i.e.
the reactor's exception handler, and the loop carries on. ``KeyboardInterrupt`` and ``SystemExit`` are not caught: they mean "stop
the program", and swallowing them is how event loops become unkillable.
"""

from __future__ import annotations

import functools
import reprlib
from typing import Any, Callable, Protocol


class _CancelCounter(Protocol):
    def note_cancelled(self) -> None: ...


class HandleOwner(Protocol):
    """What a handle needs of its reactor: where to report, and whose heap it is in.

    Structural, so that this bottom layer imports nothing above it
    (``loop.BaseReactor`` is one).
    """

    @property
    def _timers(self) -> _CancelCounter: ...

    def call_exception_handler(self, context: dict[str, Any]) -> None: ...

__all__ = ["Handle", "TimerHandle", "HandleOwner", "describe_callback"]


def _qualname(callback: Any) -> Any:
    """``callback.__qualname__``, naming the class that defines a method.

    A method of a compiled class (the mypyc build, see setup.py) is a
    builtin method, whose ``__qualname__`` names the instance's class
    (``Reactor.stop``) where a Python method names the defining one
    (``BaseReactor.stop``): look it up, so both builds say the same.
    """
    name = getattr(callback, "__qualname__", None)
    owner = getattr(callback, "__self__", None)
    if name and owner is not None and type(callback) is _BUILTIN_METHOD and "." in name:
        attr = name.rpartition(".")[2]
        for cls in type(owner).__mro__:
            if attr in cls.__dict__:
                return f"{cls.__qualname__}.{attr}"
    return name


_BUILTIN_METHOD = type(len)


def _callback_name(callback: Any) -> str:
    if isinstance(callback, functools.partial):
        callback = callback.func
    return _qualname(callback) or type(callback).__name__


def describe_callback(callback: Callable[..., Any], args: tuple[Any, ...] = ()) -> str:
    """Render ``callback(args)`` the way a person would write the call."""
    if isinstance(callback, functools.partial):
        args = callback.args + args
        callback = callback.func
    name = _qualname(callback) or repr(callback)
    return f"{name}({', '.join(reprlib.repr(a) for a in args)})"


class Handle:
    """A callback scheduled to run once (or, for I/O, once per event)."""

    # _origin: where debug mode saw the handle made (reactor.debug); an
    # attribute, not a weak-keyed table, since compiled classes (the mypyc
    # build) cannot be weakly referenced.
    __slots__ = ("_callback", "_args", "_cancelled", "_reactor", "_repr", "_origin")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...], reactor: HandleOwner) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._reactor = reactor
        # Computed while the callback is still known, so a cancelled handle
        # can still say what it was.
        self._repr: str | None = None
        self._origin: Any = None

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__}{state} {self._describe()}>"

    def _describe(self) -> str:
        if self._repr is None:
            self._repr = describe_callback(self._callback, self._args)
        return self._repr

    def cancel(self) -> None:
        """Prevent the callback from running. Safe to call more than once."""
        if not self._cancelled:
            if self._repr is None:
                # Keep a name for repr() without rendering the arguments:
                # cancel() is hot (a timeout per request is cancelled per
                # request), and reprlib on the args would dominate its cost.
                self._repr = _callback_name(self._callback) + "(...)"
            self._cancelled = True
            self._callback = None  # type: ignore[assignment]
            self._args = ()

    def cancelled(self) -> bool:
        return self._cancelled

    def _report(self, exc: BaseException) -> None:
        self._reactor.call_exception_handler(
            {
                "message": f"Exception in callback {self._describe()}",
                "exception": exc,
                "handle": self,
            }
        )


class TimerHandle(Handle):
    """A handle with a deadline, living in the reactor's timer heap."""

    __slots__ = ("_when", "_scheduled")

    def __init__(
        self, when: float, callback: Callable[..., Any], args: tuple[Any, ...], reactor: HandleOwner
    ) -> None:
        # Handle.__init__, inlined: call_later is hot.
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._reactor = reactor
        self._repr = None
        self._origin = None
        self._when = when
        # True while the handle sits in the heap: only then does cancelling it
        # add to the heap's count of dead entries.
        self._scheduled = False

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<TimerHandle{state} when={self._when:.6f} {self._describe()}>"

    def when(self) -> float:
        """The reactor time at which the callback is due."""
        return self._when

    def cancel(self) -> None:
        if not self._cancelled:
            Handle.cancel(self)
            if self._scheduled:
                # Tell the heap it holds one more dead entry; it may compact.
                self._reactor._timers.note_cancelled()
