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
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .handles import Handle

__all__ = ["SignalHandlers"]


def _wake_only(signum: int, frame: Any) -> None:
    """The Python-level handler: the wakeup-fd byte does the real work."""


class SignalHandlers:
    """The signal callbacks of one reactor, and the process state it borrowed."""

    __slots__ = ("_wakeup_fd", "_handlers", "_previous", "_previous_wakeup_fd")

    def __init__(self, wakeup_fd: int) -> None:
        self._wakeup_fd = wakeup_fd
        self._handlers: dict[int, Handle] = {}
        self._previous: dict[int, Any] = {}  # signal -> disposition before us
        self._previous_wakeup_fd: int | None = None  # None: not installed

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
            signal.signal(sig, _wake_only)
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
