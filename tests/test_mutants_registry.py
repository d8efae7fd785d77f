"""ConnectionRegistry behaviours that mutation testing found unpinned (python -m tests.mutation)."""

from __future__ import annotations

import gc
import weakref

from reactor import Protocol

from .conftest import run_until


def test_closed_listeners_and_finished_connectors_are_not_kept(reactor):
    listener = reactor.listen_tcp(Protocol, "127.0.0.1", 0)
    connector = reactor.connect_tcp(Protocol, *listener.address)
    run_until(reactor, connector.done)
    connector.result().close()
    listener.close()
    listener.close_connections()
    run_until(reactor, lambda: not reactor.connections())
    gone = [weakref.ref(listener), weakref.ref(connector)]
    del listener, connector
    gc.collect()
    assert [ref() for ref in gone] == [None, None]  # a server making connections all day does not grow
