"""Shared fixtures: the selector matrix, hypothesis profiles, and loop drivers."""

from __future__ import annotations

import os
import selectors
import time
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from reactor import Reactor

from . import timeouts


def pytest_configure(config: pytest.Config) -> None:
    # No test can hang: see tests/timeouts.py (not registered twice under -p tests.timeouts).
    if not config.pluginmanager.is_registered(timeouts):
        config.pluginmanager.register(timeouts, "tests.timeouts")

# A fast profile for CI and a deep one for long runs (HYPOTHESIS_PROFILE=deep).
settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Mutation runs (python -m tests.mutation): the same examples for every mutant
# and every run, so that a verdict does not depend on the draw.
settings.register_profile(
    "mutation", max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def examples(n: int) -> int:
    """*n* examples for a slow property under the default profile; the deep
    profile's count scaled alike (so ``@settings`` never caps a deep run)."""
    return max(n, n * settings().max_examples // 100)

# Every selector class this platform offers: the loop must behave the same
# on each (CPython's test_events.py runs its suite per selector the same way).
SELECTOR_CLASSES = [
    getattr(selectors, name)
    for name in ("SelectSelector", "PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector")
    if hasattr(selectors, name)
]


@pytest.fixture(params=SELECTOR_CLASSES, ids=lambda cls: cls.__name__)
def selector_class(request: pytest.FixtureRequest) -> type[selectors.BaseSelector]:
    return request.param


@pytest.fixture
def reactor(selector_class: type[selectors.BaseSelector]) -> Iterator[Reactor]:
    r = Reactor(selector=selector_class())
    yield r
    r.close()


def run_until(reactor: Reactor, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Step *reactor* until *condition()* holds; fail after *timeout* seconds.

    The synchronisation primitive of these tests: never sleep, drive the loop
    and look at state, with a deadline so a bug fails instead of hanging.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"condition not reached within {timeout}s")
        reactor.run_once(min(remaining, 0.1))


def before_each_wait(reactor: Reactor, before: Callable[[float | None], None]) -> None:
    """Call ``before(timeout_in_seconds)`` each time *reactor* is about to wait for I/O.

    The loop waits through ``selector.select()`` or, for Epoll and Poll, its
    fast path (``reactor._poll``, see ``loop._fast_poll``); this hooks both,
    so tests that watch the wait cover both paths.
    """
    real_select = reactor._selector.select

    def select(timeout=None):
        before(timeout)
        return real_select(timeout)

    reactor._selector.select = select  # an instance attribute shadows the method
    if reactor._poll is not None:
        real_poll, unit = reactor._poll, reactor._poll_unit

        def poll(timeout, maxevents):
            before(timeout / unit)
            return real_poll(timeout, maxevents)

        reactor._poll = poll


@pytest.fixture(autouse=True)
def _the_shared_empty_send_buffer_stays_empty() -> Iterator[None]:
    """Every idle transport shares one empty SendBuffer: nothing may ever land in it."""
    from reactor import streams as transports

    yield
    assert transports._NO_BUFFER.nbytes == 0 and transports._NO_BUFFER._chunks is None
