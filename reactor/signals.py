"""Signal handling: running a Python callback for a Unix signal, inside the loop.

Theory of operation
-------------------
A signal can arrive at any instruction, and a handler that runs there
(between two bytecodes of whatever the loop was doing) cannot safely touch the
reactor's state. So the reactor never does work in the signal handler. It
relies on two facts of CPython:

1. ``signal.set_wakeup_fd(fd)``: when any signal arrives, the interpreter's
   C-level handler writes the signal number, as one byte, to *fd*. The reactor
   passes the write end of its waker, so a signal makes select() return and
   the signal number is read back in the loop, like any other readable data.
2. The Python-level handler installed with ``signal.signal`` must exist for
   the signal to be caught at all, but ours does nothing: the byte is the
   message.

Signal dispositions and the wakeup fd belong to the whole process, not to the
reactor. The reactor borrows them: it remembers what was installed before and
puts it back when the last handler is removed or the reactor is closed.
``signal`` only works in the main thread; we say so plainly instead of letting
a ValueError from deep inside escape.

Closing from another thread. ``close()`` may run on any thread, but only the
main thread may put signal state back. So a reactor closed elsewhere
*orphans* its handlers (``orphan()``): the waker stays open (the process's
wakeup fd must never name a freed descriptor, or a signal would write into
whatever file reuses the number), and the state is put back by the first of
(a) ``remove_signal_handler()`` from the main thread, or (b) the next signal
the orphaned handlers catch, which then goes on to what was installed
before (SIGINT raises ``KeyboardInterrupt`` again). Then the waker closes.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .handles import Handle

__all__ = ["SignalHandlers"]


class SignalHandlers:
    """The signal callbacks of one reactor, and the process state it borrowed."""

    __slots__ = ("_wakeup_fd", "_handlers", "_previous", "_previous_wakeup_fd", "_orphaned")

    def __init__(self, wakeup_fd: int) -> None:
        self._wakeup_fd = wakeup_fd
        self._handlers: dict[int, Handle] = {}
        self._previous: dict[int, Any] = {}  # signal -> disposition before us
        self._previous_wakeup_fd: int | None = None  # None: not installed
        # Set by orphan(): called once everything is restored (closes the waker).
        self._orphaned: Optional[Callable[[], None]] = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        """The Python-level handler: the wakeup-fd byte does the real work.

        Orphaned (the reactor closed from another thread), it restores the
        process's state (this runs in the main thread) and hands the signal
        to what was there before us.
        """
        if self._orphaned is None or signum not in self._handlers:
            return
        previous = self._previous.get(signum)
        self.restore_all()
        if callable(previous):
            previous(signum, frame)
        elif previous in (None, signal.SIG_DFL):
            signal.raise_signal(signum)  # the default action, now restored

    def orphan(self, on_restored: Callable[[], None]) -> None:
        """The reactor closed off the main thread: restore later (module docstring)."""
        self._orphaned = on_restored

    def __len__(self) -> int:
        return len(self._handlers)

    def get(self, signum: int) -> Handle | None:
        return self._handlers.get(signum)

    def add(self, sig: int, handle: Handle) -> None:
        sig = _check_signal(sig)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be added from the main thread")
        if self._previous_wakeup_fd is None:
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_fd)
        previous = signal.getsignal(sig)
        try:
            signal.signal(sig, self._on_signal)
        except OSError as exc:  # SIGKILL, SIGSTOP
            if not self._handlers:
                self._restore_wakeup_fd()
            raise RuntimeError(f"signal {sig} cannot be caught: {exc}") from None
        self._previous.setdefault(sig, previous)
        old = self._handlers.get(sig)
        if old is not None:
            old.cancel()
        self._handlers[sig] = handle

    def remove(self, sig: int) -> bool:
        sig = _check_signal(sig)
        if sig not in self._handlers:
            return False
        if threading.current_thread() is not threading.main_thread():
            # Checked before touching our table, so that the main thread can
            # still restore everything later.
            raise RuntimeError("signal handlers can only be removed from the main thread")
        handle = self._handlers.pop(sig)
        handle.cancel()
        previous = self._previous.pop(sig)
        # getsignal() returns None for a handler not installed from Python;
        # the best we can restore then is the default disposition.
        signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        if not self._handlers:
            self._restore_wakeup_fd()
            on_restored, self._orphaned = self._orphaned, None
            if on_restored is not None:
                on_restored()
        return True

    def restore_all(self) -> None:
        for sig in list(self._handlers):
            self.remove(sig)

    def _restore_wakeup_fd(self) -> None:
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None


def _check_signal(sig: int) -> int:
    if not isinstance(sig, int):
        raise TypeError(f"signal number expected, got {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")
    return int(sig)
