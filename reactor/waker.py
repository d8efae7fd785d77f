"""The waker: how another thread, or a signal, interrupts a blocked select().

Theory of operation
-------------------
A loop blocked in ``select()`` only notices file descriptors. To let another
thread hand it work, the reactor keeps a connected, non-blocking socketpair
and watches the read end like any other reader; ``wake()`` writes one byte to
the other end. A socketpair rather than a pipe because it is what Windows has
too and what ``signal.set_wakeup_fd`` accepts everywhere.

Writes are coalesced. ``wake()`` writes only when no byte is already waiting:
one byte is enough to make select() return, and a flood of
``call_soon_threadsafe`` calls should not become a flood of syscalls, nor fill
the socket buffer. The ordering that keeps this correct:

    waking thread                       loop thread
    1. put the work where the loop      1. read every byte (drain)
       will look (the ready deque)      2. clear ``_pending``
    2. if not ``_pending``:             3. look at the ready deque
         set it, write one byte

If a waking thread sees ``_pending`` set, the byte it relies on is either
still unread (select() will return) or was read in step 1 and the loop has
not yet reached step 3, where it will find the work. Clearing the flag
*before* draining would be wrong: a byte written in between would be eaten
while the flag says one is pending, and every later wake-up would be skipped.
A full socket buffer (``BlockingIOError``) likewise means "already awake".

The same socket is the process's signal wakeup fd: the C-level signal handler
writes the signal number as one byte. Waker bytes are ``0``, which is no
signal, so ``drain()`` can return the signal numbers it found.
"""

from __future__ import annotations

import socket

__all__ = ["Waker"]

WAKE_BYTE = b"\0"
_DRAIN_CHUNK = 4096


class Waker:
    __slots__ = ("_rsock", "_wsock", "_pending")

    def __init__(self) -> None:
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._pending = False

    def fileno(self) -> int:
        """The read end, for the selector."""
        return self._rsock.fileno()

    def write_fileno(self) -> int:
        """The write end, for ``signal.set_wakeup_fd``."""
        return self._wsock.fileno()

    def wake(self) -> None:
        """Make the loop's next (or current) select() return. Thread-safe."""
        if self._pending:
            return
        self._pending = True
        try:
            self._wsock.send(WAKE_BYTE)
        except OSError:
            # BlockingIOError: the buffer is full, so the loop is awake anyway.
            # Any other error: the reactor is closing and nobody will listen.
            pass

    def drain(self) -> bytes:
        """Consume all pending bytes; return the non-zero ones (signal numbers)."""
        signals = b""
        while True:
            try:
                data = self._rsock.recv(_DRAIN_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            if not data:  # pragma: no cover - the write end is ours, never shut
                break
            signals += data.replace(WAKE_BYTE, b"")
        # Only now: see the module docstring for why the order matters.
        self._pending = False
        return signals

    def close(self) -> None:
        self._rsock.close()
        self._wsock.close()
