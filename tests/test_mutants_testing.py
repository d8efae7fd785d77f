"""VirtualClock behaviours that mutation testing found unpinned (python -m tests.mutation):
where a new clock starts, and the error for a step backwards."""

from __future__ import annotations

import re

import pytest

from reactor import Reactor
from reactor.testing import VirtualClock


def test_a_new_clock_starts_at_zero_or_where_told():
    clock = VirtualClock()
    assert clock() == 0.0
    with Reactor(clock=clock) as reactor:
        assert reactor.time() == 0.0
        assert reactor.call_later(2.5, lambda: None).when() == 2.5
    started = VirtualClock(5)
    assert started() == 5.0 and type(started()) is float
    assert started.advance(0) == 5.0 and started.advance(1.5) == 6.5


def test_the_clock_refuses_to_go_backwards_and_says_why():
    clock = VirtualClock(3.0)
    with pytest.raises(ValueError, match=re.escape("a monotonic clock cannot go backwards")) as caught:
        clock.advance(-0.001)
    assert str(caught.value) == "a monotonic clock cannot go backwards"
    assert clock() == 3.0
