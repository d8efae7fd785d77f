"""Scheduling: call_soon / call_later / call_at / cancel against a model, in virtual time."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from reactor import MAX_SELECT_TIMEOUT, Reactor
from reactor.testing import VirtualClock
from reactor.timers import MIN_COMPACT_SIZE

from .conftest import SELECTOR_CLASSES, run_until


class SchedulingModel(RuleBasedStateMachine):
    """The reactor versus a list-and-sort model of what must fire, and when.

    The model: callbacks scheduled with call_soon wait in FIFO order; timers
    are (when, seq) pairs. One ``run_once(0)`` must fire, in this order, the
    pending soon-callbacks, then every live timer with ``when <= now`` sorted
    by (when, seq); nothing cancelled, nothing twice, nothing early. Work that
    a callback schedules while running waits for the next step.
    """

    selector_class: type = SELECTOR_CLASSES[0]
    handles = Bundle("handles")

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock(1000.0)
        self.reactor = Reactor(selector=self.selector_class(), clock=self.clock)
        self.next_id = 0
        self.soon: list[int] = []  # model: ids pending via call_soon
        self.timers: dict[int, tuple[float, int]] = {}  # id -> (when, seq)
        self.cancelled: set[int] = set()
        self.fired: list[tuple[int, float]] = []  # (id, clock at firing)
        self.ever_fired: set[int] = set()

    def teardown(self) -> None:
        self.reactor.close()

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _record(self, ident: int, spawn: bool = False) -> None:
        self.fired.append((ident, self.clock()))
        if spawn:
            child = self._new_id()
            self.reactor.call_soon(self._record, child)
            self.soon.append(child)  # must not run in the current step

    @rule(target=handles, spawn=st.booleans())
    def call_soon(self, spawn: bool):
        ident = self._new_id()
        handle = self.reactor.call_soon(self._record, ident, spawn)
        self.soon.append(ident)
        return (ident, handle)

    @rule(target=handles, delay=st.floats(-10, 100, allow_nan=False) | st.sampled_from([0, 1, 1, 2]))
    def call_later(self, delay: float):
        ident = self._new_id()
        handle = self.reactor.call_later(delay, self._record, ident)
        when = self.clock() + max(delay, 0.0)
        assert handle.when() == when
        self.timers[ident] = (when, ident)  # ids increase, so they order ties
        return (ident, handle)

    @rule(target=handles, offset=st.floats(-10, 100, allow_nan=False))
    def call_at(self, offset: float):
        ident = self._new_id()
        when = self.clock() + offset
        handle = self.reactor.call_at(when, self._record, ident)
        self.timers[ident] = (when, ident)
        return (ident, handle)

    @rule(entry=handles)
    def cancel(self, entry):
        ident, handle = entry
        handle.cancel()
        assert handle.cancelled()
        if ident not in self.ever_fired:
            self.cancelled.add(ident)
            self.timers.pop(ident, None)

    @rule(count=st.integers(1, 2 * MIN_COMPACT_SIZE + 20), keep_every=st.integers(2, 10))
    def churn(self, count: int, keep_every: int):
        """Many timers, most cancelled at once: exercises heap compaction."""
        for i in range(count):
            ident = self._new_id()
            handle = self.reactor.call_later(50 + i % 7, self._record, ident)
            self.timers[ident] = (handle.when(), ident)
            if i % keep_every:
                handle.cancel()
                self.cancelled.add(ident)
                del self.timers[ident]

    @rule(dt=st.floats(0, 60, allow_nan=False) | st.sampled_from([0.0, 1.0]))
    def advance(self, dt: float):
        self.clock.advance(dt)

    @rule()
    def step(self):
        now = self.clock()
        expected = [i for i in self.soon if i not in self.cancelled]
        due = sorted((when_seq, i) for i, when_seq in self.timers.items() if when_seq[0] <= now)
        expected += [i for _, i in due]
        # Forget what this step consumes before running it: callbacks append
        # their children to self.soon while the step runs.
        self.soon = []
        for _, i in due:
            del self.timers[i]
        self.fired.clear()
        self.reactor.run_once(0)

        assert [i for i, _ in self.fired] == expected
        for i, fired_at in self.fired:
            assert i not in self.ever_fired, f"callback {i} fired twice"
            self.ever_fired.add(i)
            assert fired_at == now

    @invariant()
    def heap_garbage_is_bounded(self):
        # Dead entries are compacted away once they are the majority of a
        # non-trivial heap, so the heap never exceeds 2 * live + the minimum.
        queue = self.reactor._timers
        live = len(queue) - queue.cancelled_count
        assert live == sum(1 for i in self.timers if i not in self.cancelled)
        assert len(queue) <= 2 * live + MIN_COMPACT_SIZE


# One state machine per selector class: the loop must not care which it has.
for _cls in SELECTOR_CLASSES:
    _machine = type(f"SchedulingModel_{_cls.__name__}", (SchedulingModel,), {"selector_class": _cls})
    globals()[f"TestScheduling{_cls.__name__}"] = _machine.TestCase
del _cls, _machine


class RecordingSelectorMixin:
    """Record the timeout the reactor asks for, but never block."""

    def select(self, timeout=None):
        self.timeouts.append(timeout)
        return super().select(0)


@pytest.fixture
def recording(selector_class):
    cls = type("Recording" + selector_class.__name__, (RecordingSelectorMixin, selector_class), {})
    selector = cls()
    selector.timeouts = []
    clock = VirtualClock(500.0)
    with Reactor(selector=selector, clock=clock) as r:
        yield r, selector.timeouts, clock


def test_select_waits_until_the_next_live_timer(recording):
    r, timeouts, clock = recording
    early = r.call_later(5, lambda: None)
    r.call_later(50, lambda: None)
    r.run_once()
    assert timeouts[-1] == 5
    early.cancel()  # a cancelled timer must not wake the loop
    r.run_once()
    assert timeouts[-1] == 50
    clock.advance(20)
    r.run_once()
    assert timeouts[-1] == 30


def test_select_timeout_is_capped(recording):
    r, timeouts, _ = recording
    r.call_later(10**9, lambda: None)
    r.run_once()
    assert timeouts[-1] == MAX_SELECT_TIMEOUT
    r.call_at(math.inf, lambda: None)
    r.run_once()
    assert timeouts[-1] == MAX_SELECT_TIMEOUT


def test_nothing_pending_still_waits_a_bounded_time(recording):
    r, timeouts, _ = recording
    r.run_once()
    assert timeouts[-1] == MAX_SELECT_TIMEOUT


def test_caller_timeout_and_ready_work_shorten_the_wait(recording):
    r, timeouts, _ = recording
    r.call_later(100, lambda: None)
    r.run_once(0.25)
    assert timeouts[-1] == 0.25
    r.run_once(-3)
    assert timeouts[-1] == 0
    r.call_soon(lambda: None)
    r.run_once(7)
    assert timeouts[-1] == 0


def test_negative_delay_means_now():
    clock = VirtualClock(10.0)
    with Reactor(clock=clock) as r:
        fired = []
        late = r.call_later(0, fired.append, "zero")
        neg = r.call_later(-5, fired.append, "negative")
        assert neg.when() == late.when() == 10.0
        r.run_once(0)
        assert fired == ["zero", "negative"]  # same deadline: scheduling order


def test_nan_delay_is_rejected():
    with Reactor() as r:
        with pytest.raises(ValueError):
            r.call_later(math.nan, lambda: None)
        with pytest.raises(ValueError):
            r.call_at(math.nan, lambda: None)


def test_real_clock_timer_never_fires_early(reactor):
    fired = []
    handle = reactor.call_later(0.03, lambda: fired.append(reactor.time()))
    run_until(reactor, lambda: fired)
    assert fired[0] >= handle.when()


def test_a_million_cancelled_timers_keep_the_heap_small():
    with Reactor() as r:
        peak = 0
        for _ in range(10**6):
            r.call_later(60.0, _noop).cancel()
            # len() of the heap, not time: the memory the timers occupy.
            peak = max(peak, len(r._timers))
        assert peak <= MIN_COMPACT_SIZE + 1
        assert len(r._timers) <= MIN_COMPACT_SIZE + 1


def test_cancelled_timers_among_live_ones_are_compacted_away():
    with Reactor() as r:
        live = [r.call_later(60.0 + i, _noop) for i in range(1000)]
        for _ in range(100_000):
            r.call_later(30.0, _noop).cancel()
        assert len(r._timers) <= 2 * len(live) + 1
        assert all(not h.cancelled() for h in live)


# The compaction rule, exactly (docs/TESTING.md: mutation testing found its
# boundaries unpinned): the heap is rebuilt when, after a cancel or after due
# timers are popped, it holds more than MIN_COMPACT_SIZE entries and the dead
# ones are strictly more than half. Earlier would cost a rebuild per pop (a
# quadratic loop); later would let garbage grow. Seen through stats():
# timers_cancelled counts the dead entries still in the heap.

@pytest.mark.parametrize("size, cancelled, compacts", [
    (MIN_COMPACT_SIZE + 2, MIN_COMPACT_SIZE // 2 + 1, False),  # exactly half dead: not yet
    (MIN_COMPACT_SIZE + 2, MIN_COMPACT_SIZE // 2 + 2, True),  # one more: rebuilt at once
    (MIN_COMPACT_SIZE + 1, MIN_COMPACT_SIZE // 2 + 1, True),
    (MIN_COMPACT_SIZE, MIN_COMPACT_SIZE, False),  # a small heap is never rebuilt
])
def test_cancelling_compacts_past_half_dead_above_the_minimum_size(size, cancelled, compacts):
    with Reactor(clock=VirtualClock()) as r:
        handles = [r.call_later(60.0 + i, _noop) for i in range(size)]
        for handle in handles[size - cancelled:]:  # the latest ones: never at the top
            handle.cancel()
        stats = r.stats()
        assert stats.timers_pending == size - cancelled
        assert stats.timers_cancelled == (0 if compacts else cancelled)


@pytest.mark.parametrize("left, cancelled, compacts", [
    (150, 1, False),  # a few dead entries in a big heap: no rebuild per pop
    (150, 60, False),  # 40% dead
    (150, 75, False),  # exactly half
    (150, 76, True),
    (MIN_COMPACT_SIZE, 60, False),  # at the minimum size: never
])
def test_popping_due_timers_compacts_past_half_dead_above_the_minimum_size(left, cancelled, compacts):
    clock = VirtualClock()
    with Reactor(clock=clock) as r:
        due = 200  # enough that no cancel below compacts (the heap is big then)
        fired: list = []
        for _ in range(due):
            r.call_later(1.0, fired.append, None)
        later = [r.call_later(60.0 + i, _noop) for i in range(left)]
        for handle in later[left - cancelled:]:
            handle.cancel()
        assert r.stats().timers_cancelled == cancelled  # nothing compacted yet
        clock.advance(1.0)
        r.run_once(0)  # pops the due ones: `left` entries stay, `cancelled` of them dead
        assert len(fired) == due
        stats = r.stats()
        assert stats.timers_pending == left - cancelled
        assert stats.timers_cancelled == (0 if compacts else cancelled)


def test_a_closed_reactor_counts_no_timers_even_after_a_cancel():
    with Reactor(clock=VirtualClock()) as r:
        handles = [r.call_later(60.0 + i, _noop) for i in range(10)]
        handles[3].cancel()
        r.close()
        stats = r.stats()
        assert (stats.timers_pending, stats.timers_cancelled) == (0, 0)
        for handle in handles:  # cancelling what close() discarded changes nothing
            handle.cancel()
        stats = r.stats()
        assert (stats.timers_pending, stats.timers_cancelled) == (0, 0)


def test_cancel_drops_references_to_callback_and_arguments():
    class Payload:
        pass

    with Reactor() as r:
        payload = Payload()
        ref = weakref.ref(payload)
        timer = r.call_later(60, _noop, payload)
        soon = r.call_soon(_noop, payload)
        del payload
        timer.cancel()
        soon.cancel()
        gc.collect()
        assert ref() is None
        assert "cancelled" in repr(timer) and "_noop" in repr(timer)


def test_cancel_after_firing_is_harmless():
    clock = VirtualClock()
    with Reactor(clock=clock) as r:
        fired = []
        handle = r.call_later(1, fired.append, 1)
        clock.advance(1)
        r.run_once(0)
        handle.cancel()
        handle.cancel()
        assert fired == [1]
        assert r._timers.cancelled_count == 0


def test_handle_reprs_say_what_will_run():
    clock = VirtualClock(3.5)
    with Reactor(clock=clock) as r:
        soon = r.call_soon(print, "hello", 42)
        timer = r.call_later(2, _noop)
        assert repr(soon) == "<Handle print('hello', 42)>"
        assert repr(timer) == "<TimerHandle when=5.500000 _noop()>"


def _noop(*args):
    pass
