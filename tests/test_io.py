"""I/O registration on real file descriptors (socketpairs): readers, writers, and stale events."""

from __future__ import annotations

import os
import socket
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from .conftest import run_until


def _noop(*args):
    pass


@pytest.fixture
def pair(reactor):
    """A connected, non-blocking socketpair, unregistered and closed afterwards."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        for sock in (a, b):
            if sock.fileno() != -1:
                reactor.remove_reader(sock)
                reactor.remove_writer(sock)
            sock.close()


@pytest.fixture
def errors(reactor):
    """Collect the contexts of callback errors instead of logging them."""
    contexts: list = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))
    return contexts


def fill(sock: socket.socket) -> int:
    """Write to non-blocking *sock* until its buffer is full; return the bytes sent."""
    total = 0
    chunk = b"x" * 65536
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def drain(sock: socket.socket) -> int:
    total = 0
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)


def test_reader_called_with_args_when_data_available(reactor, pair, errors):
    a, b = pair
    calls = []

    def on_readable(*args):
        calls.append((args, a.recv(100)))

    reactor.add_reader(a, on_readable, "x", 2)
    reactor.run_once(0)
    assert calls == []  # nothing to read yet
    b.send(b"hello")
    run_until(reactor, lambda: calls)
    assert calls == [(("x", 2), b"hello")]
    reactor.run_once(0)  # consumed: not readable any more
    assert calls == [(("x", 2), b"hello")]
    assert errors == []


def test_reader_called_every_iteration_while_readable(reactor, pair):
    a, b = pair
    calls = []
    reactor.add_reader(a, calls.append, "r")
    b.send(b"x")
    for _ in range(3):
        reactor.run_once(0)
    assert calls == ["r", "r", "r"]


def test_writer_called_with_args_when_writable(reactor, pair):
    a, b = pair
    calls = []
    reactor.add_writer(a, calls.append, "w")
    run_until(reactor, lambda: calls)
    assert calls == ["w"]
    assert reactor.remove_writer(a) is True
    reactor.run_once(0)
    assert calls == ["w"]


def test_writer_waits_for_buffer_space(reactor, pair):
    a, b = pair
    assert fill(a) > 0
    calls = []
    reactor.add_writer(a, calls.append, "w")
    reactor.run_once(0)
    assert calls == []  # buffer full: not writable
    assert drain(b) > 0
    run_until(reactor, lambda: calls)
    assert calls[0] == "w"


def test_reader_and_writer_on_one_fd_share_one_selector_key(reactor, pair):
    a, b = pair
    selector = reactor._selector
    baseline = len(selector.get_map())  # the waker's own key is in there
    reads, writes = [], []

    reactor.add_reader(a, reads.append, "r")
    assert len(selector.get_map()) == baseline + 1
    assert selector.get_key(a).events == EVENT_READ

    reactor.add_writer(a, writes.append, "w")
    assert len(selector.get_map()) == baseline + 1
    key = selector.get_key(a)
    assert key.fd == a.fileno()
    assert key.events == EVENT_READ | EVENT_WRITE
    reader, writer = key.data
    assert reader is not None and writer is not None

    # Both directions ready in one select(): each callback runs once.
    b.send(b"x")
    reactor.run_once(0)
    assert reads == ["r"] and writes == ["w"]

    # Removing the writer narrows the mask and keeps the reader as it was.
    assert reactor.remove_writer(a) is True
    assert len(selector.get_map()) == baseline + 1
    key = selector.get_key(a)
    assert key.events == EVENT_READ
    assert key.data == (reader, None)
    assert key.data[0] is reader and not reader.cancelled()
    assert writer.cancelled()
    reactor.run_once(0)
    assert reads == ["r", "r"] and writes == ["w"]

    # Removing the reader too unregisters the fd.
    assert reactor.remove_reader(a) is True
    assert reader.cancelled()
    assert len(selector.get_map()) == baseline
    assert a.fileno() not in selector.get_map()
    reactor.run_once(0)
    assert reads == ["r", "r"] and writes == ["w"]


def test_removing_reader_keeps_writer(reactor, pair):
    a, b = pair
    selector = reactor._selector
    writes = []
    reactor.add_reader(a, _noop)
    reactor.add_writer(a, writes.append, "w")
    writer = selector.get_key(a).data[1]
    assert reactor.remove_reader(a) is True
    key = selector.get_key(a)
    assert key.events == EVENT_WRITE
    assert key.data == (None, writer)
    reactor.run_once(0)
    assert writes == ["w"]


def test_replacing_a_reader_calls_only_the_new_one(reactor, pair):
    a, b = pair
    calls = []
    reactor.add_reader(a, calls.append, "old")
    old = reactor._selector.get_key(a).data[0]
    reactor.add_reader(a, calls.append, "new")
    assert old.cancelled()
    assert len([k for k in reactor._selector.get_map().values() if k.fd == a.fileno()]) == 1
    b.send(b"x")
    run_until(reactor, lambda: calls)
    reactor.run_once(0)
    assert calls == ["new", "new"]


def test_replacing_a_writer_calls_only_the_new_one(reactor, pair):
    a, b = pair
    calls = []
    reactor.add_writer(a, calls.append, "old")
    reactor.add_writer(a, calls.append, "new")
    run_until(reactor, lambda: calls)
    assert calls == ["new"]


def test_remove_returns_whether_something_was_registered(reactor, pair):
    a, b = pair
    assert reactor.remove_reader(a) is False
    assert reactor.remove_writer(a) is False
    assert reactor.remove_reader(b.fileno()) is False

    reactor.add_reader(a, _noop)
    assert reactor.remove_writer(a) is False  # only a reader is registered...
    assert reactor._selector.get_key(a).events == EVENT_READ  # ...and it is untouched
    assert reactor.remove_reader(a) is True
    assert reactor.remove_reader(a) is False

    reactor.add_writer(a, _noop)
    assert reactor.remove_reader(a) is False
    assert reactor.remove_writer(a) is True
    assert reactor.remove_writer(a) is False


def test_int_fd_and_socket_object_are_the_same_registration(reactor, pair):
    a, b = pair
    selector = reactor._selector
    baseline = len(selector.get_map())
    calls = []

    reactor.add_reader(a.fileno(), calls.append, "by fd")
    reactor.add_reader(a, calls.append, "by socket")  # replaces, does not add
    assert len(selector.get_map()) == baseline + 1
    reactor.add_writer(a.fileno(), _noop)
    assert len(selector.get_map()) == baseline + 1
    assert selector.get_key(a).events == EVENT_READ | EVENT_WRITE

    b.send(b"x")
    run_until(reactor, lambda: calls)
    assert set(calls) == {"by socket"}

    assert reactor.remove_reader(a.fileno()) is True
    assert reactor.remove_reader(a) is False
    assert reactor.remove_writer(a) is True
    assert reactor.remove_writer(a.fileno()) is False
    assert len(selector.get_map()) == baseline


def test_reader_exception_is_reported_and_reader_stays_registered(reactor, pair, errors):
    a, b = pair
    calls = []

    def broken_reader():
        calls.append(1)
        raise OSError("reader failed")

    reactor.add_reader(a, broken_reader)
    b.send(b"x")
    reactor.run_once(0)
    assert len(calls) == 1
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], OSError)
    assert errors[0]["handle"] is reactor._selector.get_key(a).data[0]
    # Still registered: the data is still there, so it is called again.
    reactor.run_once(0)
    assert len(calls) == 2 and len(errors) == 2
    assert reactor.remove_reader(a) is True


def test_reader_removing_its_own_fds_writer_suppresses_the_pending_write_event(reactor, pair):
    a, b = pair
    calls = []

    def on_readable():
        calls.append("read")
        assert reactor.remove_writer(a) is True

    reactor.add_reader(a, on_readable)
    reactor.add_writer(a, calls.append, "write")
    b.send(b"x")
    reactor.run_once(0)  # readable and writable in the same select()
    assert calls == ["read"]
    reactor.run_once(0)
    assert calls == ["read", "read"]


def test_reader_removing_itself_is_not_called_again(reactor, pair):
    a, b = pair
    calls = []

    def once():
        calls.append(1)
        reactor.remove_reader(a)

    reactor.add_reader(a, once)
    b.send(b"x")
    reactor.run_once(0)
    reactor.run_once(0)
    assert calls == [1]


def test_reused_fd_in_one_batch_does_not_receive_the_stale_event(reactor, errors):
    """A callback closes another registered socket and a new socket takes its fd.

    Both sockets are readable in the same select(); the event already returned
    for the old socket must not reach the new socket's reader.
    """
    a_r, a_w = socket.socketpair()
    b_r, b_w = socket.socketpair()
    c_r, c_w = socket.socketpair()
    replacement: list[socket.socket] = []
    socks = {"a": a_r, "b": b_r}
    fds = {"a": a_r.fileno(), "b": b_r.fileno()}
    other = {"a": "b", "b": "a"}
    originals_ran: list[str] = []
    new_reader_calls: list[str] = []
    batches: list[set[int]] = []

    real_select = reactor._selector.select

    def recording_select(timeout=None):
        result = real_select(timeout)
        batches.append({key.fd for key, _ in result})
        return result

    reactor._selector.select = recording_select
    if reactor._poll is not None:  # the loop's fast path polls directly (loop._fast_poll)
        real_poll = reactor._poll

        def recording_poll(timeout, maxevents):
            result = real_poll(timeout, maxevents)
            batches.append({fd for fd, _ in result})
            return result

        reactor._poll = recording_poll

    def original(name):
        originals_ran.append(name)
        if len(originals_ran) > 1:
            return  # the stale event was delivered: asserted below
        victim = other[name]
        fd = fds[victim]
        assert reactor.remove_reader(fd) is True
        socks[victim].close()
        # A brand-new (and readable) socket takes over the freed fd number.
        assert os.dup2(c_r.fileno(), fd) == fd
        replacement.append(socket.socket(fileno=fd))
        reactor.add_reader(fd, new_reader_calls.append, "new")

    try:
        c_w.send(b"c")  # the replacement is readable from the start
        reactor.add_reader(a_r, original, "a")
        reactor.add_reader(b_r, original, "b")
        a_w.send(b"a")
        b_w.send(b"b")

        reactor.run_once(0)

        assert len(batches) == 1 and {fds["a"], fds["b"]} <= batches[0], (
            "both sockets must be readable in the same select()"
        )
        assert len(originals_ran) == 1, originals_ran
        assert new_reader_calls == []  # the stale event did not reach it
        assert len(replacement) == 1
        victim = other[originals_ran[0]]
        assert replacement[0].fileno() == fds[victim]
        assert errors == []

        # The new registration is live: its socket is readable, so it fires
        # in the next iteration, and the surviving original still works.
        reactor.run_once(0)
        assert new_reader_calls == ["new"]
        assert originals_ran == [originals_ran[0]] * 2
        assert errors == []
    finally:
        for sock in (a_r, b_r, *replacement):
            if sock.fileno() != -1:
                reactor.remove_reader(sock.fileno())
        for sock in (*replacement, a_r, a_w, b_r, b_w, c_r, c_w):
            sock.close()
