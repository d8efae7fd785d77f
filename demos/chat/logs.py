"""Logging that cannot block the loop: write when stderr can take it, else queue, then drop and count.

Theory of operation
-------------------
``logging.StreamHandler`` writes to stderr with a blocking ``write()``. If
stderr is a pipe and its reader stops reading (a ``| less`` left paused, a
supervisor that died), the pipe fills after 64 KiB and the next log line
blocks the whole server: every chat stops. The stdlib's answer,
``QueueHandler`` + ``QueueListener``, moves the write into a thread; the
loop starts no threads, so we do it the event loop's way instead:

- ``emit`` formats the record and appends it to a queue bounded in bytes;
  when the queue is full the record is dropped and counted.
- ``flush`` writes from the queue only while ``select()`` (with a zero
  timeout) says stderr is writable, and at most ``PIPE_BUF`` bytes per
  ``write()``: a pipe that reports room takes that much without blocking.
- While records wait, the handler watches stderr with the reactor's
  ``add_writer`` and finishes the job when the reader catches up; then it
  logs how many records were dropped.

The file descriptor itself stays blocking: it may be shared with stdout (a
terminal, ``2>&1``), and making it non-blocking would make ``print`` fail.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections import deque
from typing import Any, Optional

__all__ = ["LoopSafeHandler", "install"]

CHUNK = select.PIPE_BUF if hasattr(select, "PIPE_BUF") else 512


class LoopSafeHandler(logging.Handler):
    def __init__(self, fd: int = 2, max_queued: int = 256 * 1024) -> None:
        super().__init__()
        self.fd = fd
        self.max_queued = max_queued
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.dropped = 0
        self.reactor: Any = None
        self._watching = False
        self._flushing = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", errors="replace")
        except Exception:  # pragma: no cover - a broken record or formatter
            self.handleError(record)
            return
        if self.queued + len(data) > self.max_queued:
            self.dropped += 1
        else:
            self.queue.append(data)
            self.queued += len(data)
        self.flush()

    def _writable(self) -> bool:
        try:
            return bool(select.select([], [self.fd], [], 0)[1])
        except (OSError, ValueError):
            return False

    def flush(self) -> None:
        if self._flushing:  # a record logged while we write (by the reactor, say): it is queued
            return
        self._flushing = True
        try:
            self._flush()
        finally:
            self._flushing = False

    def _flush(self) -> None:
        while self.queue and self._writable():
            head = self.queue[0]
            try:
                n = os.write(self.fd, head[:CHUNK])
            except BlockingIOError:
                break
            except OSError:  # stderr is gone: nothing more will get out
                self.dropped += len(self.queue)
                self.queue.clear()
                self.queued = 0
                break
            self.queued -= n
            if n == len(head):
                self.queue.popleft()
            else:
                self.queue[0] = head[n:]
            if not self.queue and self.dropped:
                note = f"(logging: {self.dropped} message(s) dropped: stderr was not keeping up)\n".encode()
                self.dropped = 0
                self.queue.append(note)
                self.queued += len(note)
        self._watch(bool(self.queue))

    def _watch(self, on: bool) -> None:
        if self.reactor is None or on == self._watching:
            return
        try:
            if on:
                self.reactor.add_writer(self.fd, self.flush)
            else:
                self.reactor.remove_writer(self.fd)
            self._watching = on
        except (PermissionError, ValueError):  # a regular file: always writable, nothing to wait for
            pass

    def attach(self, reactor: Any) -> None:
        """Finish pending writes from *reactor* when stderr is ready."""
        self.reactor = reactor
        self.flush()

    def detach(self, timeout: float = 2.0) -> None:
        """After the loop: stop watching, and give stderr up to *timeout*
        seconds to take what is left (the loop no longer runs: waiting
        blocks nobody); what it cannot take by then is lost."""
        self._watch(False)
        self.reactor = None
        deadline = time.monotonic() + timeout
        while self.queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                select.select([], [self.fd], [], remaining)
            except (OSError, ValueError):
                break
            self.flush()


def install(level: int, fd: int = 2) -> LoopSafeHandler:
    """Replace the root logger's handlers with one ``LoopSafeHandler``."""
    handler = LoopSafeHandler(fd)
    tag = os.environ.get("REACTOR_WORKER", "")  # a worker of --workers (demos/workers.py) says which
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {'worker ' + tag + ' ' if tag else ''}"
                                           f"%(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def current() -> Optional[LoopSafeHandler]:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LoopSafeHandler):
            return handler
    return None
