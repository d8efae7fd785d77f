"""The reactor: one thread, one selector, and a queue of things to run.

Theory of operation
-------------------
The reactor keeps three sources of work and one place where work is done.

* The **ready queue** (a deque of Handles): callbacks that should run as soon
  as possible. ``call_soon`` appends here, and so, each iteration, do the
  other two sources.
* The **timer heap** (``timers.TimerQueue``): callbacks due at a time.
* The **selector** (any ``selectors.BaseSelector``): one key per file
  descriptor whose ``data`` is the pair ``(reader, writer)`` of Handles.
  Adding or removing a reader or writer modifies that key in place.

One iteration (``run_once``) is, in order:

1. **Decide how long to wait.** Zero if anything is ready (or stop() was
   called); otherwise until the earliest live timer; never longer than
   ``MAX_SELECT_TIMEOUT``, and never longer than the caller's *timeout*.
2. **Wait**: ``selector.select(wait)`` (for the stdlib epoll and poll
   selectors, the poll object underneath, called directly: see
   ``_fast_poll``). This is the only place the reactor blocks.
3. **Turn events into work**: for each (key, mask), append the key's reader
   and/or writer handle to the ready queue, unless it was cancelled.
4. **Turn due timers into work**: every timer with ``when <= now``.
5. **Run** exactly the handles in the queue at this point, in order. A
   callback scheduled by one of them runs in the next iteration, so a
   callback that re-schedules itself cannot keep the loop from select().

Stale events. Step 3 holds the keys select() returned; a callback run in
step 5 may remove a reader, close its socket, and open a new one that gets
the same fd number, all before the event for the old fd is dispatched. The
event carries the *handle* that was registered when select() returned, not
the fd, and removing a reader cancels that handle; a cancelled handle is
skipped when it is dequeued. So the old event dies, and the new owner of the
fd never sees it.

Threads and signals. The reactor starts no thread and is not thread-safe,
with one exception: ``call_soon_threadsafe`` appends to the ready deque
(``deque.append`` is atomic) and pokes the waker (``waker.py``), whose socket
is watched like any reader. Signals arrive through the same socket
(``signals.py``).

Errors. A callback's exception goes to the exception handler
(``call_exception_handler``); the loop continues. ``KeyboardInterrupt`` and
``SystemExit`` leave ``run()``; the handles not yet run stay queued, so the
reactor can be run again.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import selectors
import threading
import time as _time
import warnings
from collections import deque
from itertools import islice
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any, Callable, Final, Optional, Union

from .debug import DEFAULT_SLOW_CALLBACK, SlowCallbackWarner, debug_setting, log_traffic
from .handles import Handle, TimerHandle, describe_callback
from .instruments import Instrument, InstrumentSet, ReactorStats
from .registry import ConnectionRegistry
from .signals import SignalHandlers
from .timers import TimerQueue
from .waker import Waker

__all__ = ["BaseReactor", "MAX_SELECT_TIMEOUT", "FD_SETSIZE", "ExceptionHandler", "FileLike"]

logger = logging.getLogger("reactor")

# asyncio's MAXIMUM_SELECT_TIMEOUT: epoll and poll take the timeout in
# milliseconds as a C int, so much larger values overflow. A loop with nothing
# to do wakes up once a day, which costs nothing.
MAX_SELECT_TIMEOUT: Final = 24 * 3600.0
# select()'s fd_set holds descriptors below this (glibc's FD_SETSIZE). asyncio
# and CPython's select module both stop at it: select() raises ValueError for
# a larger one, for every fd at once, every iteration. So the reactor refuses
# such an fd when it is registered, where the caller can still act on it.
FD_SETSIZE = 1024
# (Final: in the compiled build, a constant rather than a dict lookup per use.)
_perf_counter: Final = _time.perf_counter

FileLike = Union[int, Any]  # an fd, or any object with a fileno() method
ExceptionHandler = Callable[["BaseReactor", "dict[str, Any]"], Any]


class BaseReactor:
    """A single-threaded event loop on the standard ``selectors`` module.

    This class is the loop: timers, file descriptors, threads and signals,
    plus the registry its transports sign into (``registry.py``).
    ``reactor.Reactor`` (``network.py``) adds the TCP, Unix and UDP front
    doors on top of it; use that one.

    *selector*: any ``selectors.BaseSelector``; the reactor owns it and closes
    it in ``close()``. Default: ``selectors.DefaultSelector()``.

    *clock*: a function returning monotonic seconds as a float. Default:
    ``time.monotonic``. Tests pass a virtual clock
    (``reactor.testing.VirtualClock``) and step the loop with
    ``run_once(0)``.
    """

    def __init__(
        self,
        selector: Optional[selectors.BaseSelector] = None,
        clock: Optional[Callable[[], float]] = None,
        *,
        debug: Optional[Union[bool, str]] = None,
    ) -> None:
        self._closed = True  # until construction succeeds; see __del__
        self._running = False
        self._selector = selector if selector is not None else selectors.DefaultSelector()
        (self._poll, self._poll_unit, self._poll_read, self._poll_write,
         self._fd_to_key) = _fast_poll(self._selector, self._drop_dead_fds)
        # The first fd number this selector cannot watch (see FD_SETSIZE).
        self.fd_limit: Optional[int] = (
            FD_SETSIZE if isinstance(self._selector, selectors.SelectSelector) else None)
        self._clock = clock if clock is not None else _time.monotonic
        self._ready: deque[Handle] = deque()
        self._timers = TimerQueue()
        self._stopping = False
        self._exception_handler: Optional[ExceptionHandler] = None
        # Observability: None until an instrument is added (see instruments.py),
        # so that every hook site costs one comparison when nobody watches.
        self._instruments: Optional[InstrumentSet] = None
        self._iterations = 0
        self._callbacks_run = 0
        self._select_seconds = 0.0
        self._busy_seconds = 0.0
        self._last_select_end = _perf_counter()
        self.registry = ConnectionRegistry(lambda: self._instruments)
        try:
            self._waker = Waker()
        except BaseException:
            self._selector.close()
            raise
        self._signals = SignalHandlers(self._waker.write_fileno())
        self._closed = False
        self._set_io(self._waker.fileno(), EVENT_READ, Handle(self._read_waker, (), self))
        self.slow_callback_duration = DEFAULT_SLOW_CALLBACK
        self._debug, self._log_traffic = debug_setting(debug, os.environ)
        # Do the transports report each read and send (observe_io)? Traffic
        # logging, or an instrument with a bytes_* hook: one flag to test.
        self.watch_io = self._log_traffic
        self._debug_warner: Optional[SlowCallbackWarner] = None
        if self._debug:
            self.set_debug(True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return (
            f"<{type(self).__name__} {state} selector={type(self._selector).__name__} "
            f"ready={len(self._ready)} timers={len(self._timers)}>"
        )

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> None:
        """Run iterations until ``stop()`` is called.

        If ``stop()`` was called before ``run()``, one iteration runs (with a
        zero wait) and then ``run()`` returns, as in asyncio.
        """
        self._enter_running()
        try:
            while True:
                self._run_once(None)
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._running = False
            self._account_busy()

    def run_once(self, timeout: Optional[float] = None) -> None:
        """Run one iteration, waiting for I/O at most *timeout* seconds.

        ``None`` waits until the next timer or I/O event; ``0`` only polls.
        This is ``run()``'s loop body, exposed for tests and for learners.
        """
        self._enter_running()
        try:
            self._run_once(timeout)
        finally:
            # stop() during a single step has nothing left to stop.
            self._stopping = False
            self._running = False
            self._account_busy()

    def stop(self) -> None:
        """Make ``run()`` return after the current iteration.

        From another thread: ``reactor.call_soon_threadsafe(reactor.stop)``.
        """
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release every socket opened on this reactor, the selector, the waker and signal state.

        Idempotent. Listeners and pending connection attempts close; open
        transports end at once (their protocols get ``connection_lost``, if
        they got ``connection_made``). Pending callbacks and timers are
        discarded. File descriptors registered with
        ``add_reader``/``add_writer`` belong to the caller and are not closed.

        From a thread other than the main one, signal handlers cannot be
        restored there: they are restored later from the main thread (see
        ``signals.py``), and the waker stays open until then.
        """
        if self._running:
            raise RuntimeError("cannot close a running reactor; call stop() first")
        if self._closed:
            return
        if self._debug:
            for transport in self.registry.transports():
                logger.warning("unclosed transport %r at reactor close", transport)
                warnings.warn(f"unclosed transport {transport!r} at reactor close",
                              ResourceWarning, source=transport)
        try:
            self.registry.close_all()
        finally:
            self._closed = True
            self._ready.clear()
            self._timers.clear()
            self._selector.close()
            if self._signals and threading.current_thread() is not threading.main_thread():
                self._signals.orphan(self._waker.close)
            else:
                try:
                    self._signals.restore_all()
                finally:
                    self._waker.close()

    def __enter__(self) -> "BaseReactor":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and not self._running:
            warnings.warn(f"unclosed reactor {self!r}", ResourceWarning, source=self)
            self.close()

    def _enter_running(self) -> None:
        self._check_closed()
        if self._running:
            raise RuntimeError(
                "the reactor is already running: run() and run_once() are not re-entrant"
            )
        self._running = True
        self._last_select_end = _perf_counter()  # time between runs is not busy

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("the reactor is closed")

    # -- one iteration -----------------------------------------------------

    def _run_once(self, timeout: Optional[float]) -> None:
        """Steps 1 to 5 of the module docstring.

        What a busy server does every iteration stays inline: step 1's
        common answers, steps 2-3 on a poll object, and step 5. Every Python
        call here is paid once per iteration, and measured, one call more
        per iteration cost 2% of the instructions of a 1 KiB echo at 1 and
        10 connections (docs/PERFORMANCE.md). The rest has methods of its
        own: ``_wait_time`` (timers), ``_select_events`` (selectors without
        a poll object), ``_timers_due``, ``_drop_dead_fds``.
        """
        instruments = self._instruments
        if instruments is not None and not instruments.watches_loop:
            instruments = None  # installed instruments watch connections, not the loop
        # Step 1's two common answers here, the rest in _wait_time.
        if self._ready or self._stopping:
            wait = 0.0
        elif not self._timers._heap and timeout is None:
            wait = MAX_SELECT_TIMEOUT  # no timers at all (the common case of a busy server)
        else:
            wait = self._wait_time(timeout)
        if instruments is not None and instruments.before_select is not None:
            instruments.before_select(wait)
        poll = self._poll
        if poll is None:
            self._select_events(wait, instruments)  # steps 2-3, any other selector
        else:
            # Steps 2-3 on the poll object itself (Discussion: see _fast_poll),
            # inline for the same reason as step 5.
            fd_to_key = self._fd_to_key
            t0 = _perf_counter()
            # Busy time is measured from the end of one select() to the start
            # of the next: two clock reads per iteration instead of three.
            self._busy_seconds += t0 - self._last_select_end
            # (Typed: the compiled build then walks it as a list of int pairs.)
            fd_events: list[tuple[int, int]] = poll(wait * self._poll_unit, len(fd_to_key))
            t1 = self._last_select_end = _perf_counter()
            self._select_seconds += t1 - t0
            if instruments is not None and instruments.after_select is not None:
                instruments.after_select(self._as_events(fd_events), t1 - t0)
            append = self._ready.append
            read_bits, write_bits = self._poll_read, self._poll_write
            for fd, bits in fd_events:
                try:
                    key = fd_to_key[fd]  # (a subscript is cheaper than .get(), and never misses here)
                except KeyError:
                    continue
                handles: tuple[Optional[Handle], Optional[Handle]] = key.data  # (typed: unpacked natively when compiled)
                reader, writer = handles
                # (A cancelled handle is skipped when run, in step 5.)
                if bits & read_bits and reader is not None:
                    append(reader)
                if bits & write_bits and writer is not None:
                    append(writer)
        if self._timers._heap:  # (no timers at all: skip the clock read)
            self._timers_due(instruments)

        # Step 5, inline (a call per iteration measurably costs at low
        # concurrency): only what is queued now; work these callbacks
        # schedule waits for the next select(). This is the error boundary
        # of the whole library (see handles.py): the one place any handle runs.
        ready = self._ready
        self._iterations += 1
        # Handles run = those dequeued minus those skipped: counted at the
        # end, not one addition per handle. Not from the loop variable after
        # a finished loop: compiled by mypyc, an empty range() leaves it at 0
        # (and older mypyc leaves it one past the end, mypyc issue #1191).
        n = len(ready)
        i = -1
        skipped = 0
        if instruments is not None and not instruments.watches_callbacks:
            instruments = None  # nobody listens to callbacks: no timing around each one
        popleft = ready.popleft
        try:  # (free unless it raises: KeyboardInterrupt must not lose the count)
            for i in range(n):
                handle = popleft()
                if handle._cancelled:
                    skipped += 1
                    continue
                if instruments is not None:  # (hooks looked up per handle: a raising
                    started = self._before_callback(instruments, handle)  # instrument is gone at once)
                try:
                    args = handle._args
                    if args:
                        handle._callback(*args)
                    else:  # (I/O handles: a plain call is cheaper than *() when compiled)
                        handle._callback()
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    handle._report(exc)
                if instruments is not None and instruments.after_callback is not None:
                    instruments.after_callback(handle, _perf_counter() - started)
        except BaseException:  # KeyboardInterrupt, SystemExit: handle i was dequeued, and counts
            self._callbacks_run += i + 1 - skipped
            raise
        self._callbacks_run += n - skipped

    def _wait_time(self, timeout: Optional[float]) -> float:
        """Step 1 with timers or a caller's timeout: until the earliest, never longer than a day."""
        deadline = self._timers.next_deadline()
        wait = MAX_SELECT_TIMEOUT if deadline is None else min(
            max(deadline - self._clock(), 0.0), MAX_SELECT_TIMEOUT)
        if timeout is not None and timeout < wait:
            wait = max(timeout, 0.0)
        return wait

    def _as_events(self, fd_events: list[tuple[int, int]]) -> list[tuple[selectors.SelectorKey, int]]:
        """The (key, mask) pairs ``selector.select()`` would have returned, for after_select."""
        events = []
        for fd, bits in fd_events:
            key = self._fd_to_key.get(fd)
            if key is not None:
                mask = (EVENT_READ if bits & self._poll_read else 0) | (
                    EVENT_WRITE if bits & self._poll_write else 0)
                events.append((key, mask & key.events))
        return events

    def _select_events(self, wait: float, instruments: Optional[InstrumentSet]) -> None:
        """Steps 2 and 3 through ``selector.select()``: any other selector."""
        t0 = _perf_counter()
        self._busy_seconds += t0 - self._last_select_end
        try:
            events = self._selector.select(wait)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            # select() fails for every fd when one was closed while
            # registered: find the dead ones and drop them, or no fd is
            # ever served again.
            self._drop_dead_fds([key for key in self._selector.get_map().values()
                                 if not _is_open(key.fd)])
            events = []
        t1 = self._last_select_end = _perf_counter()
        self._select_seconds += t1 - t0
        if instruments is not None and instruments.after_select is not None:
            instruments.after_select(events, t1 - t0)
        append = self._ready.append
        for key, mask in events:
            reader, writer = key.data
            if mask & EVENT_READ and reader is not None:
                append(reader)
            if mask & EVENT_WRITE and writer is not None:
                append(writer)

    def _drop_dead_fds(self, keys: list[selectors.SelectorKey], report: bool = True) -> None:
        """Unregister fds that were closed without being removed, and say so once each.

        Discussion: a closed fd left in the selector breaks every iteration
        (select() raises EBADF) or spins (poll() reports POLLNVAL, which
        reads as "readable", forever). The owner forgot ``remove_reader``;
        that is a bug to report, but it must not take the loop down.
        """
        for key in keys:
            reader, writer = key.data
            for handle in (reader, writer):
                if handle is not None:
                    handle.cancel()
            try:
                self._selector.unregister(key.fileobj)
            except (KeyError, ValueError):  # pragma: no cover - already gone
                pass
            if report:
                self.call_exception_handler({
                    "message": f"fd {key.fd} was closed while registered; its reader and writer "
                               "were removed (call remove_reader/remove_writer before closing)",
                    "fd": key.fd, "reader": reader, "writer": writer})

    def _timers_due(self, instruments: Optional[InstrumentSet]) -> None:
        """Step 4: due timers join the ready queue."""
        ready = self._ready
        if instruments is None or instruments.timer_fired is None:
            self._timers.pop_due(self._clock(), ready)
            return
        before = len(ready)
        self._timers.pop_due(self._clock(), ready)
        for handle in list(islice(ready, before, None)):
            instruments.timer_fired(handle)

    @staticmethod
    def _before_callback(instruments: InstrumentSet, handle: Handle) -> float:
        if instruments.before_callback is not None:
            instruments.before_callback(handle)
        return _perf_counter()

    # -- observability -------------------------------------------------------

    def _account_busy(self) -> None:
        """Close the busy interval at the end of a run: time outside run() is not busy."""
        now = _perf_counter()
        self._busy_seconds += now - self._last_select_end
        self._last_select_end = now


    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        """Debug mode (see ``reactor.debug``): slow-callback warnings and more."""
        self._debug = bool(enabled)
        if self._debug and self._debug_warner is None:
            self._debug_warner = SlowCallbackWarner(self)
            self.add_instrument(self._debug_warner)
        elif not self._debug and self._debug_warner is not None:
            self.remove_instrument(self._debug_warner)
            self._debug_warner = None

    def _remember(self, handle: Handle) -> Handle:
        if self._debug_warner is not None:
            self._debug_warner.remember(handle)
        return handle

    def add_instrument(self, instrument: Instrument) -> None:
        """Start calling *instrument*'s hooks (see ``reactor.instruments``)."""
        if not isinstance(instrument, Instrument):
            raise TypeError(f"an Instrument was expected, got {instrument!r}")
        if self._instruments is None:
            self._instruments = InstrumentSet(self.call_exception_handler, self._instruments_changed)
        self._instruments.add(instrument)

    def _instruments_changed(self, instruments: InstrumentSet) -> None:
        self._instruments = instruments if instruments.instruments else None  # empty: the free path
        self.watch_io = self._log_traffic or (self._instruments is not None and instruments.watches_io)

    def remove_instrument(self, instrument: Instrument) -> bool:
        """Stop calling *instrument*; False if it was not installed."""
        instruments = self._instruments
        return instruments is not None and instruments.remove(instrument)

    def stats(self) -> ReactorStats:
        """A frozen snapshot of what the loop has done and holds (see ``ReactorStats``)."""
        readers = writers = 0
        if not self._closed:
            for key in self._selector.get_map().values():
                reader, writer = key.data
                readers += reader is not None
                writers += writer is not None
        cancelled = self._timers.cancelled_count
        received, sent, buffered = self.registry.totals()
        return ReactorStats(
            iterations=self._iterations, select_seconds=self._select_seconds,
            busy_seconds=self._busy_seconds, callbacks_run=self._callbacks_run,
            timers_pending=len(self._timers) - cancelled, timers_cancelled=cancelled,
            readers=readers - (not self._closed), writers=writers,  # minus the waker
            connections_open=len(self.registry), bytes_received=received, bytes_sent=sent,
            bytes_buffered=buffered, accepts_shed=self.registry.accepts_shed)

    def connections(self) -> list[Any]:
        """Every transport (stream or datagram) open on this reactor."""
        return self.registry.transports()

    def observe_io(self, transport: Any, received: bool, data: Any, n: int) -> None:
        """Tell the traffic log and the ``bytes_*`` instrument hooks about one read or send.

        Transports call this only while ``watch_io`` is set, so the plain
        path pays one attribute test per I/O call. *data* holds (at least the
        start of) the *n* bytes; ``n == 0`` on a read is end of file.
        """
        if self._log_traffic:
            log_traffic(transport, received, data, n)
        instruments = self._instruments
        if instruments is not None:
            hook = instruments.bytes_received if received else instruments.bytes_sent
            if hook is not None:
                hook(transport, n)

    # -- scheduling --------------------------------------------------------

    def time(self) -> float:
        """The reactor's clock: the time base of ``call_at``."""
        return self._clock()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` in the next iteration, after those already queued."""
        self._check_closed()
        _check_callable(callback, "call_soon")
        handle = Handle(callback, args, self)
        self._ready.append(handle)
        if self._debug_warner is not None:
            self._remember(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after *delay* seconds; a negative delay means now."""
        # call_at's body, inlined: a timeout per request makes this hot.
        if self._closed:
            raise RuntimeError("the reactor is closed")
        if not callable(callback):
            _check_callable(callback, "call_later")
        if delay != delay:
            raise ValueError("delay must be a number, not NaN")
        handle = TimerHandle(self._clock() + (delay if delay > 0.0 else 0.0), callback, args, self)
        self._timers.push(handle)
        instruments = self._instruments
        if (instruments is not None and instruments.timer_scheduled is not None) or self._debug_warner is not None:
            self._timer_scheduled(handle)
        return handle

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once ``time() >= when``; never before."""
        self._check_closed()
        _check_callable(callback, "call_at")
        if when != when:  # NaN (the same test as call_later's inlined copy)
            raise ValueError("when must be a number, not NaN")
        handle = TimerHandle(when, callback, args, self)
        self._timers.push(handle)
        instruments = self._instruments
        if (instruments is not None and instruments.timer_scheduled is not None) or self._debug_warner is not None:
            self._timer_scheduled(handle)
        return handle

    def _timer_scheduled(self, handle: TimerHandle) -> None:
        if self._debug_warner is not None:
            self._remember(handle)
        instruments = self._instruments
        if instruments is not None and instruments.timer_scheduled is not None:
            instruments.timer_scheduled(handle)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """``call_soon`` that may be called from any thread, and wakes the loop."""
        self._check_closed()
        _check_callable(callback, "call_soon_threadsafe")
        handle = Handle(callback, args, self)
        if self._debug_warner is not None:
            self._remember(handle)
        self._ready.append(handle)
        self._waker.wake()
        return handle

    def _read_waker(self) -> None:
        for signum in self._waker.drain():
            handle = self._signals.get(signum)
            if handle is not None and not handle._cancelled:
                self._ready.append(handle)

    # -- I/O registration --------------------------------------------------

    def add_reader(self, fileobj: FileLike, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` each iteration in which *fileobj* is readable.

        Replaces any reader already registered for the same fd. Refuses an fd
        the selector cannot watch: ``ValueError`` past ``fd_limit``,
        ``OSError(EBADF)`` for one that is not open.
        """
        self._add_io(fileobj, EVENT_READ, "add_reader", callback, args)

    def remove_reader(self, fileobj: FileLike) -> bool:
        """Stop watching *fileobj* for reading; False if no reader was registered."""
        return not self._closed and self._set_io(fileobj, EVENT_READ, None)

    def add_writer(self, fileobj: FileLike, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` each iteration in which *fileobj* is writable (as add_reader)."""
        self._add_io(fileobj, EVENT_WRITE, "add_writer", callback, args)

    def remove_writer(self, fileobj: FileLike) -> bool:
        """Stop watching *fileobj* for writing; False if no writer was registered."""
        return not self._closed and self._set_io(fileobj, EVENT_WRITE, None)

    def _add_io(self, fileobj: FileLike, event: int, method: str, callback: Callable[..., Any],
                args: tuple[Any, ...]) -> None:
        self._check_closed()
        _check_callable(callback, method)
        self._set_io(fileobj, event, self._remember(Handle(callback, args, self)))

    def _set_io(self, fileobj: FileLike, event: int, handle: Optional[Handle]) -> bool:
        """Install (or, with None, remove) the handle for one direction of an fd.

        Returns whether a handle was there before. The replaced handle is
        cancelled, which is what neutralises its events already returned by
        select() but not yet dispatched.
        """
        selector = self._selector
        try:
            key = selector.get_key(fileobj)
        except (KeyError, ValueError):
            # ValueError: a closed file object that was never registered.
            if handle is None:
                return False
            key = None
        if key is not None and handle is not None and key.fileobj is not fileobj:
            # Another object for the same fd number: the same file (a socket
            # and its int fd), or the old owner closed it without
            # remove_reader and this object got the number. epoll forgot the
            # old registration in the second case, so register afresh
            # (harmless in the first); a closed owner's handles go.
            if _is_open_object(key.fileobj):
                selector.unregister(key.fileobj)
                key = selector.register(fileobj, key.events, key.data)
            else:
                self._drop_dead_fds([key], report=False)
                key = None
        if key is None:
            assert handle is not None
            self._check_registrable(fileobj)
            data = (handle, None) if event == EVENT_READ else (None, handle)
            key = selector.register(fileobj, event, data)
            instruments = self._instruments
            if instruments is not None and instruments.fd_registered is not None:
                instruments.fd_registered(key.fd, event)
            return False
        reader, writer = key.data
        if event == EVENT_READ:
            old, reader = reader, handle
        else:
            old, writer = writer, handle
        if old is not None:
            old.cancel()
        mask = (EVENT_READ if reader is not None else 0) | (
            EVENT_WRITE if writer is not None else 0
        )
        if mask:
            selector.modify(fileobj, mask, (reader, writer))
        else:
            selector.unregister(fileobj)
        instruments = self._instruments
        if instruments is not None:
            if mask and instruments.fd_registered is not None:
                instruments.fd_registered(key.fd, mask)
            elif not mask and instruments.fd_unregistered is not None:
                instruments.fd_unregistered(key.fd)
        return old is not None

    def _check_registrable(self, fileobj: FileLike) -> None:
        """Refuse an fd the selector cannot watch, now rather than at every select().

        A descriptor past ``fd_limit`` breaks select() for every fd (asyncio
        refuses it the same way); a closed or never-opened one breaks it too
        (EBADF) or, under poll(), spins on POLLNVAL.
        """
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if self.fd_limit is not None and fd >= self.fd_limit:
            raise ValueError(f"fd {fd} is out of range for {type(self._selector).__name__} "
                             f"(FD_SETSIZE is {self.fd_limit}); use another selector")
        if not _is_open(fd):
            raise OSError(errno.EBADF, f"fd {fd} is not open")

    # -- signals -----------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in the loop whenever signal *sig* arrives.

        Unix, main thread only. The previous disposition of *sig* and the
        process's previous wakeup fd come back on ``remove_signal_handler`` or
        ``close()``.
        """
        self._check_closed()
        _check_callable(callback, "add_signal_handler")
        self._signals.add(sig, self._remember(Handle(callback, args, self)))

    def remove_signal_handler(self, sig: int) -> bool:
        """Restore *sig*'s previous disposition; False if we had no handler for it.

        Works on a closed reactor too: one closed from another thread leaves
        its signal state for the main thread to restore (see ``close()``).
        """
        return self._signals.remove(sig)

    # -- errors ------------------------------------------------------------

    def set_exception_handler(self, handler: Optional[ExceptionHandler]) -> None:
        """Route callback errors to ``handler(reactor, context)``; None restores the default.

        *context* is a dict with at least ``message``, usually ``exception``
        and ``handle`` (asyncio's convention, so handlers can be shared).
        """
        if handler is not None and not callable(handler):
            raise TypeError(f"a callable object or None was expected, got {handler!r}")
        self._exception_handler = handler

    def get_exception_handler(self) -> Optional[ExceptionHandler]:
        return self._exception_handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log *context* at ERROR level on the ``reactor`` logger, with its traceback."""
        message = context.get("message") or "Unhandled exception in reactor"
        exc = context.get("exception")
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else False
        details = [f"{key}: {value!r}" for key, value in sorted(context.items())
                   if key not in ("message", "exception")]
        logger.error("\n".join([message, *details]), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Report an error; never raises (except KeyboardInterrupt/SystemExit)."""
        handler = self._exception_handler
        try:
            if handler is None:
                self.default_exception_handler(context)
            else:
                handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # A broken handler must not stop the loop; a broken logger must
            # not either, so this last resort avoids default_exception_handler.
            try:
                logger.error(
                    "Exception in the exception handler %s while handling: %s",
                    describe_callback(handler) if handler is not None else "(default)",
                    context.get("message"),
                    exc_info=exc,
                )
            except Exception:  # pragma: no cover - logging itself is broken
                pass


def _fast_poll(selector: selectors.BaseSelector, drop_dead: Callable[[list[selectors.SelectorKey]], None]
               ) -> tuple[Any, float, int, int, "dict[int, selectors.SelectorKey]"]:
    """(poll, timeout unit, read bits, write bits, fd -> key) for steps 2-3, or Nones.

    Discussion: ``selector.select()`` is Python code that, per event, looks
    up the key, computes a mask and appends a ``(key, mask)`` tuple, all of
    which the loop then unpacks again: a measurable share of an echo
    server's time. For the two stdlib selectors built on a poll object,
    EpollSelector and PollSelector, the loop calls that object's ``poll()``
    itself and finds each fd's key in the selector's own dict: the two
    private attributes we rely on, ``_selector`` and ``_fd_to_key``, both
    unchanged since ``selectors`` appeared in Python 3.4. Registration
    still goes through the selector's public methods, so ``get_key``,
    ``get_map`` and their validation are untouched. The event bits are
    read the way ``selectors`` reads them: anything but "writable" wakes
    the reader (errors and hang-ups included), anything but "readable"
    wakes the writer. Only the exact
    classes qualify (a subclass may override ``select()``); an
    ``after_select`` instrument gets the ``(key, mask)`` pairs rebuilt.
    POLLNVAL (poll only: epoll forgets a closed fd by itself) marks an fd
    closed while registered: poll's wrapper hands those to *drop_dead*
    (``_drop_dead_fds``) before the loop sees them, so the epoll path, the
    default, pays nothing for the check. Timeouts: epoll takes seconds,
    poll milliseconds; both round up to their resolution, so a timer is
    never polled for early.
    """
    inner: Any = getattr(selector, "_selector", None)
    fd_to_key = getattr(selector, "_fd_to_key", None)
    if hasattr(inner, "poll") and isinstance(fd_to_key, dict):
        if type(selector) is getattr(selectors, "EpollSelector", None):
            return inner.poll, 1.0, ~select.EPOLLOUT, ~select.EPOLLIN, fd_to_key
        if type(selector) is getattr(selectors, "PollSelector", None):
            poll, nval = inner.poll, select.POLLNVAL

            def checked_poll(timeout: float, _maxevents: int) -> list[tuple[int, int]]:
                events: list[tuple[int, int]] = poll(timeout)
                dead = [fd_to_key[fd] for fd, bits in events if bits & nval and fd in fd_to_key]
                if dead:
                    drop_dead(dead)
                    events = [(fd, bits) for fd, bits in events if not bits & nval]
                return events
            return checked_poll, 1000.0, ~select.POLLOUT, ~select.POLLIN, fd_to_key
    return None, 1.0, 0, 0, {}  # (an unused dict: typed, so the compiled build indexes it natively)


def _is_open_object(fileobj: FileLike) -> bool:
    """Is this registered object still open? A closed socket says fileno() == -1."""
    if not isinstance(fileobj, int):
        try:
            if fileobj.fileno() < 0:
                return False
        except (OSError, ValueError):
            return False
        return True
    return _is_open(fileobj)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _check_callable(callback: Any, method: str) -> None:
    if not callable(callback):
        raise TypeError(f"{method}() expects a callable, got {callback!r}")
