"""ConnectionRegistry behaviours that mutation testing found unpinned (python -m tests.mutation)."""

from __future__ import annotations

import gc

from reactor import Protocol

from .conftest import run_until


def held_in_a_set(obj) -> bool:
    """Whether some set still holds *obj* (the registry keeps its endpoints in one).

    Asked of the garbage collector rather than through a weak reference:
    compiled classes (the mypyc build) cannot be weakly referenced.
    """
    gc.collect()
    return any(isinstance(referrer, set) for referrer in gc.get_referrers(obj))


def test_closed_listeners_and_finished_connectors_are_not_kept(reactor):
    listener = reactor.listen_tcp(Protocol, "127.0.0.1", 0)
    connector = reactor.connect_tcp(Protocol, *listener.address)
    assert held_in_a_set(listener) and held_in_a_set(connector)  # registered while open / pending
    run_until(reactor, connector.done)
    assert not held_in_a_set(connector)  # a server making connections all day does not grow
    connector.result().close()
    listener.close()
    listener.close_connections()
    run_until(reactor, lambda: not reactor.connections())
    assert not held_in_a_set(listener)
