"""Instruments: hooks to watch the reactor work, free when nobody listens.

Theory of operation
-------------------
An ``Instrument`` (trio's idea) is an object with methods named after
moments in the reactor's life: ``before_select``, ``after_callback``,
``bytes_sent`` ... Subclass ``Instrument``, override the hooks you care
about, and ``reactor.add_instrument(it)``.

Cost. The reactor keeps ``_instruments = None`` while none is installed, and
every call site is guarded by ``if instruments is not None``: one attribute
load and one comparison per event, nothing else. Once instruments exist, an
``InstrumentSet`` keeps, per hook name, only the bound methods of instruments
that actually *override* that hook, so an instrument interested in
``after_select`` does not make every callback pay for ``before_callback``.

Failure. An instrument that raises is removed at once and the exception is
reported to the reactor's exception handler: watching must never break what
is watched.

The hooks, in the order they happen (see docs/ARCHITECTURE.md)::

    before_select(timeout)            step 1 -> 2: about to block at most timeout s
    after_select(nevents, waited)     step 2 -> 3: select() returned
    timer_scheduled(handle)           call_later / call_at
    timer_fired(handle)               step 4: a due timer moved to the ready queue
    before_callback(handle)           step 5, for each handle run
    after_callback(handle, elapsed)   ... and after it, with its duration
    fd_registered(fd, events)         a key added or its mask changed
    fd_unregistered(fd)               a key removed
    connection_opened(transport)      a transport created
    connection_closed(transport, exc) its connection_lost ran
    bytes_received(transport, n)      n bytes (or one datagram of n) read
    bytes_sent(transport, n)          n bytes handed to the kernel
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .handles import Handle, TimerHandle

__all__ = ["Instrument", "InstrumentSet", "HOOKS", "ReactorStats"]


class Instrument:
    """Base class: every hook does nothing. Override the ones you need."""

    def before_select(self, timeout: float) -> None: ...
    def after_select(self, nevents: int, waited: float) -> None: ...
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


class InstrumentSet:
    """The installed instruments, indexed by the hooks they override."""

    def __init__(self, report: Callable[[dict[str, Any]], None],
                 on_empty: Callable[[], None] = lambda: None) -> None:
        self._report = report
        self._on_empty = on_empty  # the reactor goes back to its free path
        self.instruments: list[Instrument] = []
        self.hooks: dict[str, list[Callable[..., Any]]] = {}
        self.watches_callbacks = False
        self.watches_timers = False
        self.watches_loop = False

    def add(self, instrument: Instrument) -> None:
        if instrument in self.instruments:
            return
        self.instruments.append(instrument)
        self._index()

    def remove(self, instrument: Instrument) -> bool:
        if instrument not in self.instruments:
            return False
        self.instruments.remove(instrument)
        self._index()
        if not self.instruments:
            self._on_empty()
        return True

    def _index(self) -> None:
        hooks: dict[str, list[Callable[..., Any]]] = {}
        for instrument in self.instruments:
            for name in HOOKS:
                if getattr(type(instrument), name, None) is not getattr(Instrument, name):
                    hooks.setdefault(name, []).append(getattr(instrument, name))
        self.hooks = hooks
        # The per-callback hooks are the hot ones: the loop skips even the
        # timing around a callback unless someone listens for it.
        self.watches_callbacks = "before_callback" in hooks or "after_callback" in hooks
        self.watches_timers = "timer_fired" in hooks
        self.watches_loop = bool(hooks.keys() & {"before_select", "after_select", "timer_fired",
                                                 "before_callback", "after_callback"})

    def call(self, hook: str, *args: Any) -> None:
        methods = self.hooks.get(hook)
        if not methods:
            return
        for method in methods:
            try:
                method(*args)
            except Exception as exc:
                instrument = method.__self__  # type: ignore[attr-defined]
                self.remove(instrument)
                self._report({"message": f"instrument {instrument!r} raised in {hook}(); removed",
                              "exception": exc, "instrument": instrument})

    def __len__(self) -> int:
        return len(self.instruments)


@dataclass(frozen=True)
class ReactorStats:
    """A snapshot of ``reactor.stats()``: numbers, not live views.

    ``busy_ratio`` is the share of the loop's time spent outside select()
    (running callbacks and bookkeeping): near 0 for an idle server, near 1
    for a saturated one.
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
