"""Instruments: hooks to watch the reactor work, free when nobody listens.

Theory of operation
-------------------
An ``Instrument`` (trio's idea) is an object with methods named after
moments in the reactor's life: ``before_select``, ``after_callback``,
``bytes_sent`` ... Subclass ``Instrument``, override the hooks you care
about, and ``reactor.add_instrument(it)``.

Cost. The reactor keeps ``_instruments = None`` while none is installed, and
every call site is guarded by ``if instruments is not None``: one attribute
load and one comparison per event, nothing else. Once instruments exist, the
``InstrumentSet`` has one attribute per hook: ``None`` when no installed
instrument *overrides* that hook, otherwise a dispatcher that calls just the
instruments that do. Call sites test the attribute before calling::

    instruments = reactor._instruments
    if instruments is not None and instruments.bytes_sent is not None:
        instruments.bytes_sent(transport, n)

so an instrument interested in ``after_select`` (debug mode's is interested
in ``after_callback``) does not make every timer pay for the hooks it leaves
alone. The busiest sites, the reads and sends of every transport, test one
flag, ``reactor._watch_io``, true only while someone overrides
``bytes_received`` or ``bytes_sent`` (or traffic logging is on).

Failure. An instrument that raises is removed at once and the exception is
reported to the reactor's exception handler: watching must never break what
is watched.

The hooks, in the order they happen (see docs/ARCHITECTURE.md)::

    before_select(timeout)            step 1 -> 2: about to block at most timeout s
    after_select(events, waited)      step 2 -> 3: select() returned these (key, mask) pairs
    timer_scheduled(handle)           call_later / call_at
    timer_fired(handle)               step 4: a due timer moved to the ready queue
    before_callback(handle)           step 5, for each handle run
    after_callback(handle, elapsed)   ... and after it, with its duration
    fd_registered(fd, events)         a key added or its mask changed
    fd_unregistered(fd)               a key removed
    connection_opened(transport)      a transport created
    connection_closed(transport, exc) its connection_lost ran
    bytes_received(transport, n)      n bytes (or one datagram of n) read; 0: end of file
    bytes_sent(transport, n)          n bytes handed to the kernel
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .handles import Handle, TimerHandle

__all__ = ["Instrument", "InstrumentSet", "HOOKS", "ReactorStats"]


class Instrument:
    """Base class: every hook does nothing. Override the ones you need."""

    def before_select(self, timeout: float) -> None: ...
    def after_select(self, events: Sequence[tuple[Any, int]], waited: float) -> None: ...
    def timer_scheduled(self, handle: "TimerHandle") -> None: ...
    def timer_fired(self, handle: "TimerHandle") -> None: ...
    def before_callback(self, handle: "Handle") -> None: ...
    def after_callback(self, handle: "Handle", elapsed: float) -> None: ...
    def fd_registered(self, fd: int, events: int) -> None: ...
    def fd_unregistered(self, fd: int) -> None: ...
    def connection_opened(self, transport: Any) -> None: ...
    def connection_closed(self, transport: Any, exc: Optional[BaseException]) -> None: ...
    def bytes_received(self, transport: Any, n: int) -> None: ...
    def bytes_sent(self, transport: Any, n: int) -> None: ...


HOOKS = tuple(name for name in vars(Instrument) if not name.startswith("_"))


Dispatch = Optional[Callable[..., None]]


class InstrumentSet:
    """The installed instruments, indexed by the hooks they override.

    Each hook name is an attribute: ``None`` if nobody overrides it, else a
    function that calls every overriding instrument in installation order.
    """

    before_select: Dispatch
    after_select: Dispatch
    timer_scheduled: Dispatch
    timer_fired: Dispatch
    before_callback: Dispatch
    after_callback: Dispatch
    fd_registered: Dispatch
    fd_unregistered: Dispatch
    connection_opened: Dispatch
    connection_closed: Dispatch
    bytes_received: Dispatch
    bytes_sent: Dispatch

    def __init__(self, report: Callable[[dict[str, Any]], None],
                 on_change: Callable[["InstrumentSet"], None] = lambda s: None) -> None:
        self._report = report
        # Called after every change, so the reactor can recompute its own
        # flags (and drop an empty set: back to the free path).
        self._on_change = on_change
        self.instruments: list[Instrument] = []
        self.hooks: dict[str, list[tuple[Instrument, Callable[..., Any]]]] = {}
        self._index()

    def add(self, instrument: Instrument) -> None:
        if instrument in self.instruments:
            return
        self.instruments.append(instrument)
        self._index()
        self._on_change(self)

    def remove(self, instrument: Instrument) -> bool:
        if instrument not in self.instruments:
            return False
        self.instruments.remove(instrument)
        self._index()
        self._on_change(self)
        return True

    def _index(self) -> None:
        hooks: dict[str, list[tuple[Instrument, Callable[..., Any]]]] = {}
        for instrument in self.instruments:
            for name in HOOKS:
                if getattr(type(instrument), name, None) is not getattr(Instrument, name):
                    hooks.setdefault(name, []).append((instrument, getattr(instrument, name)))
        self.hooks = hooks
        for name in HOOKS:
            setattr(self, name, self._dispatcher(name, hooks[name]) if name in hooks else None)
        # The per-callback hooks are the hot ones: the loop skips even the
        # timing around a callback unless someone listens for it.
        self.watches_callbacks = "before_callback" in hooks or "after_callback" in hooks
        self.watches_loop = bool(hooks.keys() & {"before_select", "after_select", "timer_fired",
                                                 "before_callback", "after_callback"})
        self.watches_io = "bytes_received" in hooks or "bytes_sent" in hooks

    def _dispatcher(self, hook: str, methods: list[tuple[Instrument, Callable[..., Any]]]
                    ) -> Callable[..., None]:
        def dispatch(*args: Any) -> None:
            for instrument, method in methods:
                try:
                    method(*args)
                except Exception as exc:
                    self.remove(instrument)
                    self._report({"message": f"instrument {instrument!r} raised in {hook}(); removed",
                                  "exception": exc, "instrument": instrument})
        dispatch.__name__ = dispatch.__qualname__ = f"dispatch_{hook}"
        return dispatch

    def __len__(self) -> int:
        return len(self.instruments)


@dataclass(frozen=True)
class ReactorStats:
    """A snapshot of ``reactor.stats()``: numbers, not live views.

    ``busy_ratio`` is the share of the loop's time spent outside select()
    (running callbacks and bookkeeping): near 0 for an idle server, near 1
    for a saturated one. ``timers_pending`` counts live timers;
    ``timers_cancelled`` the cancelled ones still in the heap (lazy
    deletion: they leave it when they reach the top or at compaction), not
    every cancel ever. ``readers`` and ``writers`` exclude the waker; the
    connection figures include every transport, a monitor console's too.
    """

    iterations: int
    select_seconds: float
    busy_seconds: float
    callbacks_run: int
    timers_pending: int
    timers_cancelled: int
    readers: int
    writers: int
    connections_open: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    bytes_buffered: int = 0
    accepts_shed: int = 0

    @property
    def busy_ratio(self) -> float:
        total = self.select_seconds + self.busy_seconds
        return self.busy_seconds / total if total else 0.0
