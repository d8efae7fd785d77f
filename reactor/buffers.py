"""The send buffer: bytes a transport has accepted but the kernel has not, yet.

Theory of operation
-------------------
``transport.write(data)`` must never block and never lose data, but
``socket.send`` may take any prefix of what it is offered, including nothing.
The send buffer holds the rest, in order, with exact bookkeeping of how much
of its first chunk has gone out. It is sans-IO: no socket inside. The
transport asks it for ``views()``, offers them to the kernel, and reports back
how many bytes were taken with ``advance(n)``. That split is what lets the
tests drive it (and the transport) with a fake socket that takes 0..n bytes
per call, under hypothesis.

Two kinds of chunk, two costs to avoid:

* **Large writes are not copied.** A ``bytes`` object is immutable, so the
  buffer keeps a ``memoryview`` of it; partial sends slice the view, which is
  O(1) and copies nothing. Mutable input (``bytearray``, a writable
  ``memoryview``) is copied once, because the caller may reuse it after
  ``write()`` returns (asyncio does the same).
* **Small writes are coalesced.** A protocol that writes 40-byte lines
  would otherwise queue one chunk (and later one iovec) per line. Writes
  smaller than ``COALESCE_LIMIT`` are appended to a ``bytearray`` at the tail.
  Once ``views()`` has exported that bytearray (the kernel may hold a view of
  it during ``sendmsg``) it is sealed: resizing an exported bytearray raises
  ``BufferError``, and mutating one under a view would corrupt data.

``views(max_count)`` returns up to ``max_count`` chunks for one vectored
``socket.sendmsg`` call (the transport passes the platform's ``IOV_MAX``).
"""

from __future__ import annotations

from collections import deque
from typing import Optional, Union

__all__ = ["SendBuffer", "COALESCE_LIMIT", "BytesLike"]

BytesLike = Union[bytes, bytearray, memoryview]

# Below this size a write is copied into the tail bytearray rather than queued
# as its own chunk. Copying 2 KiB costs about as much as the bookkeeping of one
# extra chunk and iovec; above it, not copying wins.
COALESCE_LIMIT = 2048


class SendBuffer:
    """A FIFO of bytes with O(1) partial consumption. Sans-IO."""

    __slots__ = ("_chunks", "nbytes", "_tail_open")

    def __init__(self) -> None:
        # memoryviews (not copied) and bytearrays (coalesced small writes);
        # the first chunk is always the next byte to send. Made on the first
        # append and dropped once drained: an empty deque costs ~760 bytes,
        # and most connections, most of the time, buffer nothing.
        self._chunks: Optional[deque[Union[memoryview, bytearray]]] = None
        # Bytes buffered: the figure flow control compares with its limits.
        # A plain attribute, read-only outside this class, so that the
        # transport's write() tests it without a method call.
        self.nbytes = 0
        self._tail_open = False  # may the last chunk (a bytearray) grow?

    def __len__(self) -> int:
        """Bytes buffered: the figure flow control compares with its limits."""
        return self.nbytes

    def __bool__(self) -> bool:
        return self.nbytes > 0

    def append(self, data: BytesLike) -> None:
        """Queue *data* after everything already buffered."""
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        n = view.nbytes
        if n == 0:
            return
        self.nbytes += n
        if self._chunks is None:
            self._chunks = deque()
        if n < COALESCE_LIMIT:
            if self._tail_open:
                self._chunks[-1] += view  # type: ignore[operator]
            else:
                self._chunks.append(bytearray(view))
                self._tail_open = True
            return
        self._tail_open = False
        if view.readonly and isinstance(view.obj, bytes):
            self._chunks.append(view)
        else:
            self._chunks.append(memoryview(bytes(view)))

    def views(self, max_count: int = 1) -> list[memoryview]:
        """Up to *max_count* chunks from the front, for one (vectored) send."""
        chunks = self._chunks
        if chunks is None:
            return []
        if len(chunks) <= max_count:
            self._tail_open = False  # the tail is exported from now on
            return [c if isinstance(c, memoryview) else memoryview(c) for c in chunks]
        out = []
        for i in range(max_count):
            c = chunks[i]
            out.append(c if isinstance(c, memoryview) else memoryview(c))
        return out

    def first(self) -> memoryview:
        """The first chunk alone: the fast path when one ``send()`` will do (IndexError if empty)."""
        if self._chunks is None:
            raise IndexError("the send buffer is empty")
        c = self._chunks[0]
        if len(self._chunks) == 1:
            self._tail_open = False
        return c if isinstance(c, memoryview) else memoryview(c)

    def chunk_count(self) -> int:
        return len(self._chunks) if self._chunks is not None else 0

    def advance(self, n: int) -> None:
        """Forget the first *n* bytes: the kernel took them."""
        if n < 0 or n > self.nbytes:
            raise ValueError(f"cannot advance by {n}: {self.nbytes} bytes buffered")
        self.nbytes -= n
        chunks = self._chunks
        if chunks is None:
            return  # advance(0) on an empty buffer
        while n:
            c = chunks[0]
            size = len(c)
            if n >= size:
                chunks.popleft()
                n -= size
                continue
            # Partial chunk: keep a view of the rest. Slicing a memoryview
            # copies nothing; a bytearray becomes a view of itself and is
            # therefore sealed (it cannot grow while viewed).
            view = c if isinstance(c, memoryview) else memoryview(c)
            chunks[0] = view[n:]
            if len(chunks) == 1:
                self._tail_open = False
            break
        if not chunks:
            self._chunks = None  # drained: give the deque back
            self._tail_open = False

    def clear(self) -> None:
        """Drop everything (``abort()``)."""
        self._chunks = None
        self.nbytes = 0
        self._tail_open = False
