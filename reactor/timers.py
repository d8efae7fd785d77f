"""The timer heap: deadlines in order, with O(1) cancellation and bounded garbage.

Theory of operation
-------------------
Timers live in a binary heap (``heapq``) of ``(when, seq, handle)`` tuples.
Tuples compare in C, so the heap never calls back into Python to order its
entries; ``seq`` breaks ties so that timers due at the same instant fire in
the order they were scheduled, and so the handle itself is never compared.

Cancelling a timer does not remove it from the heap (that would be O(n)): the
handle is marked cancelled and skipped when it reaches the top. The risk of
lazy deletion is garbage: a program that schedules and cancels a timeout per
request would grow the heap without bound. So the queue counts its dead
entries, and when they are the majority of a heap of non-trivial size it
rebuilds the heap from the live ones. Each rebuild removes more than half of
the entries, so its O(n) cost is paid for by the cancellations that caused it:
amortised O(1) per cancel. The check runs after every cancel and every pop, so
after either, a heap of more than MIN_COMPACT_SIZE entries is at least half
live.

This module knows nothing about clocks or sockets: the reactor asks it two
questions, "when is the next deadline?" and "which timers are due at time
*now*?", and feeds it handles.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .handles import Handle, TimerHandle

__all__ = ["TimerQueue", "MIN_COMPACT_SIZE"]

# asyncio's _MIN_SCHEDULED_TIMER_HANDLES: below this size a few dead entries
# cost less than rebuilding the heap.
MIN_COMPACT_SIZE = 100


class TimerQueue:
    """A heap of TimerHandles ordered by (deadline, scheduling order)."""

    __slots__ = ("_heap", "_cancelled", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._cancelled = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Entries in the heap, cancelled ones included (what memory holds)."""
        return len(self._heap)

    @property
    def cancelled_count(self) -> int:
        """Cancelled entries still occupying the heap."""
        return self._cancelled

    def push(self, handle: TimerHandle) -> None:
        handle._scheduled = True
        heapq.heappush(self._heap, (handle._when, next(self._seq), handle))

    def note_cancelled(self) -> None:
        """Called by TimerHandle.cancel() for a handle that is in the heap."""
        self._cancelled += 1
        if self._cancelled * 2 > len(self._heap) > MIN_COMPACT_SIZE:  # _maybe_compact, inlined
            self._compact()

    def _maybe_compact(self) -> None:
        size = len(self._heap)
        if size > MIN_COMPACT_SIZE and self._cancelled * 2 > size:
            self._compact()

    def _compact(self) -> None:
        live = [entry for entry in self._heap if not entry[2]._cancelled]
        heapq.heapify(live)
        self._heap = live
        self._cancelled = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is pending.

        Dead entries found at the top are popped on the way, so the answer is
        never a cancelled timer's deadline (which would wake the loop for
        nothing).
        """
        heap = self._heap
        while heap:
            when, _, handle = heap[0]
            if not handle._cancelled:
                return when
            heapq.heappop(heap)
            handle._scheduled = False
            self._cancelled -= 1
        return None

    def pop_due(self, now: float, ready: deque[Handle]) -> None:
        """Move every live timer with ``when <= now`` to *ready*, in order.

        ``<=`` and not ``< now + resolution`` (asyncio's choice): a timer is
        never run before its deadline, at the price of sometimes one more
        short wait in select().
        """
        heap = self._heap
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            handle._scheduled = False
            if handle._cancelled:
                self._cancelled -= 1
            else:
                ready.append(handle)
        # Popping live timers can leave the dead ones in the majority.
        self._maybe_compact()

    def clear(self) -> None:
        for _, _, handle in self._heap:
            handle._scheduled = False
        self._heap.clear()
        self._cancelled = 0
