"""demos/resp.py: the RESP client on reactor transports, against a real redis-server and fake ones."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from demos.resp import (Backoff, RedisAddress, RedisDown, RedisError, RedisOverloaded, RedisTimeout, RespConnection,
                        parse_url, probe)
from reactor import Reactor

from .conftest import run_until
from .redis_server import RedisServer, need_hiredis, redis_server  # noqa: F401


@pytest.fixture
def loop():
    with Reactor() as reactor:
        yield reactor


def connect(reactor: Reactor, port: int, **kwargs: Any) -> tuple[RespConnection, dict[str, Any]]:
    need_hiredis()
    state: dict[str, Any] = {"ready": False, "lost": None, "messages": []}
    conn = RespConnection(reactor, RedisAddress("127.0.0.1", port),
                          on_ready=lambda: state.__setitem__("ready", True),
                          on_lost=lambda exc: state.__setitem__("lost", exc),
                          on_message=lambda ch, data: state["messages"].append((ch, data)), **kwargs)
    conn.connect()
    return conn, state


def test_an_array_reply_that_looks_like_a_push_is_a_reply(loop, redis_server):
    conn, state = connect(loop, redis_server.port)
    conn.on_message = None  # a command connection
    run_until(loop, lambda: state["ready"])
    replies: list[Any] = []
    conn.call("RPUSH", "l", "message", "chan", "data")
    conn.call("LRANGE", "l", 0, -1, callback=replies.append)
    conn.call("PING", callback=replies.append)
    run_until(loop, lambda: len(replies) == 2)
    assert replies == [[b"message", b"chan", b"data"], b"PONG"]
    conn.close()
    run_until(loop, lambda: conn.finished)


def test_pipelined_replies_come_back_in_order(loop, redis_server):
    conn, state = connect(loop, redis_server.port)
    run_until(loop, lambda: state["ready"])
    replies: list[Any] = []
    conn.call("DEL", "n")
    for _ in range(1000):  # all written before any reply is read
        conn.call("INCR", "n", callback=replies.append)
    assert conn.pending == 1001
    run_until(loop, lambda: len(replies) == 1000)
    assert replies == list(range(1, 1001))
    conn.close()
    run_until(loop, lambda: conn.finished)


def test_an_error_reply_concerns_one_command(loop, redis_server):
    conn, state = connect(loop, redis_server.port)
    run_until(loop, lambda: state["ready"])
    replies: list[Any] = []
    conn.call("SET", "s", "text", callback=replies.append)
    conn.call("INCR", "s", callback=replies.append)
    conn.call("GET", "s", callback=replies.append)
    run_until(loop, lambda: len(replies) == 3)
    assert replies[0] == b"OK" and replies[2] == b"text"
    assert isinstance(replies[1], RedisError) and "not an integer" in str(replies[1])
    assert state["lost"] is None
    conn.close()
    run_until(loop, lambda: conn.finished)


def test_pubsub_pushes_go_to_on_message_and_confirmations_to_callbacks(loop, redis_server):
    sub, state = connect(loop, redis_server.port)
    pub, pub_state = connect(loop, redis_server.port)
    run_until(loop, lambda: state["ready"] and pub_state["ready"])
    confirmed: list[Any] = []
    sub.call_many([("SUBSCRIBE", "a"), ("PSUBSCRIBE", "room:*")], [confirmed.append, confirmed.append])
    run_until(loop, lambda: len(confirmed) == 2)
    assert confirmed == [[b"subscribe", b"a", 1], [b"psubscribe", b"room:*", 2]]
    for i in range(100):
        pub.call("PUBLISH", "a" if i % 2 else "room:x", str(i))
    run_until(loop, lambda: len(state["messages"]) == 100)
    assert state["messages"] == [(b"a" if i % 2 else b"room:x", str(i).encode()) for i in range(100)]
    sub.close()
    pub.close()
    run_until(loop, lambda: sub.finished and pub.finished)


def test_a_redis_that_stops_answering_times_out_and_callbacks_hear_it(loop, redis_server):
    conn, state = connect(loop, redis_server.port, timeout=0.3)
    run_until(loop, lambda: state["ready"])
    replies: list[Any] = []
    redis_server.pause()
    try:
        conn.call("PING", callback=replies.append)
        run_until(loop, lambda: state["lost"] is not None, timeout=5)
    finally:
        redis_server.resume()
    assert isinstance(state["lost"], RedisTimeout) and "within 0.3 s" in str(state["lost"])
    assert len(replies) == 1 and isinstance(replies[0], RedisDown)
    with pytest.raises(RedisDown):
        conn.call("PING")


def test_redis_going_away_is_reported_once(loop, redis_server):
    conn, state = connect(loop, redis_server.port)
    run_until(loop, lambda: state["ready"])
    replies: list[Any] = []
    redis_server.stop()
    conn.call("PING", callback=replies.append)
    run_until(loop, lambda: conn.finished)
    assert isinstance(state["lost"], (RedisDown, OSError))
    assert len(replies) == 1 and isinstance(replies[0], RedisDown)


class Sink:
    """A fake server that accepts and never reads (nor answers): its kernel buffers fill up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []

    def accept(self) -> None:
        self.listener.settimeout(5)
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.listener.close()


def test_a_server_that_does_not_read_cannot_fill_our_memory(loop):
    sink = Sink()
    try:
        conn, state = connect(loop, sink.port, max_buffer=256 * 1024, timeout=30)
        run_until(loop, lambda: state["ready"])  # no handshake without a password or a database
        sink.accept()
        value = b"x" * 65536
        sent = 0
        while state["lost"] is None and sent < 1000:  # 64 MB if nothing stopped us
            try:
                conn.call("SET", "k", value)
            except RedisDown:
                break
            sent += 1
            assert conn.transport.get_write_buffer_size() <= 256 * 1024 + 70000
            loop.run_once(0)
        run_until(loop, lambda: state["lost"] is not None)
        assert isinstance(state["lost"], RedisOverloaded) and "not keeping up" in str(state["lost"])
        assert sent < 100
    finally:
        sink.close()


def test_too_many_commands_waiting_drops_the_connection(loop):
    sink = Sink()
    try:
        conn, state = connect(loop, sink.port, max_pending=10, timeout=30)
        run_until(loop, lambda: state["ready"])
        for _ in range(10):
            conn.call("PING")
        with pytest.raises(RedisDown, match="not keeping up"):
            conn.call("PING")
        run_until(loop, lambda: state["lost"] is not None)
        assert isinstance(state["lost"], RedisOverloaded)
    finally:
        sink.close()


def test_garbage_from_the_server_is_a_clear_error(loop):
    need_hiredis()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        conn, state = connect(loop, listener.getsockname()[1])
        run_until(loop, lambda: state["ready"])
        listener.settimeout(5)
        peer, _ = listener.accept()
        with peer:
            conn.call("PING")
            peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            run_until(loop, lambda: state["lost"] is not None)
        assert "bad reply" in str(state["lost"])
    finally:
        listener.close()


def test_handshake_selects_the_database_and_names_the_connection(loop, redis_server):
    need_hiredis()
    ready: list[bool] = []
    conn = RespConnection(loop, RedisAddress("127.0.0.1", redis_server.port, db=3), name="chat-test",
                          on_ready=lambda: ready.append(True))
    conn.connect()
    run_until(loop, lambda: ready)
    replies: list[Any] = []
    conn.call("SET", "in3", "yes")
    conn.call("CLIENT", "GETNAME", callback=replies.append)
    run_until(loop, lambda: replies)
    assert replies == [b"chat-test"]
    assert redis_server.command("SELECT", 3) == b"OK"
    conn.close()
    run_until(loop, lambda: conn.finished)


def test_a_refused_password_is_reported(loop, redis_server):
    need_hiredis()
    lost: list[BaseException] = []
    conn = RespConnection(loop, RedisAddress("127.0.0.1", redis_server.port, password="nope"),
                          on_lost=lost.append)
    conn.connect()
    run_until(loop, lambda: lost)
    assert "refused AUTH" in str(lost[0])


@pytest.mark.parametrize("url, address", [
    ("redis://127.0.0.1:6379/0", RedisAddress("127.0.0.1", 6379, 0)),
    ("redis://localhost", RedisAddress("localhost", 6379, 0)),
    ("redis://:s3cret@10.0.0.2:7000/5", RedisAddress("10.0.0.2", 7000, 5, None, "s3cret")),
    ("redis://bob:p%40ss@h/1", RedisAddress("h", 6379, 1, "bob", "p@ss")),
])
def test_parse_url(url, address):
    assert parse_url(url) == address


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:6379", "expected a redis://"),
    ("redis://", "no host"),
    ("redis://h:99999/0", "bad port"),
    ("redis://h:6379/zero", "must be a number"),
    ("redis://h/0?x=1", "unexpected"),
])
def test_parse_url_errors(url, why):
    with pytest.raises(ValueError, match=why):
        parse_url(url)


def test_probe(redis_server):
    assert probe(parse_url(redis_server.url)) is None
    assert "said" in probe(RedisAddress("127.0.0.1", redis_server.port, password="x"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    assert probe(RedisAddress("127.0.0.1", closed_port)) == "Connection refused"


def test_backoff_doubles_to_a_cap_and_resets():
    import random

    backoff = Backoff(0.1, 1.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(0.8 * b <= d <= 1.2 * b for d, b in zip(delays, bases))
    backoff.reset()
    assert backoff.next() <= 0.12


# -- replies chopped anywhere (no sockets: the protocol object fed directly) -------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .conftest import examples  # noqa: E402


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def set_max_write_buffer_size(self, size: int) -> None:
        pass


class FakeReactor:
    def time(self) -> float:
        return 0.0

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        class Timer:
            def cancel(self) -> None:
                pass
        return Timer()


def _resp(value: Any) -> bytes:
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, RedisError):
        return b"-" + str(value).encode() + b"\r\n"
    return b"*%d\r\n" % len(value) + b"".join(_resp(v) for v in value)


replies = st.recursive(st.integers(-2**40, 2**40) | st.binary(max_size=40)
                       | st.text("ABC xyz", min_size=1, max_size=10).map(lambda t: RedisError("ERR " + t)),
                       lambda inner: st.lists(inner, max_size=4), max_leaves=10)
pushes = st.tuples(st.binary(min_size=1, max_size=10), st.binary(max_size=30))


@settings(max_examples=examples(100))
@given(stream=st.lists(st.one_of(replies.map(lambda r: ("reply", r)), pushes.map(lambda p: ("push", p))),
                       max_size=20),
       cuts=st.lists(st.integers(min_value=0), max_size=15))
def test_replies_and_pushes_chopped_anywhere(stream, cuts):
    need_hiredis()
    got: list[Any] = []
    messages: list[tuple[bytes, bytes]] = []
    conn = RespConnection(FakeReactor(), RedisAddress("h"), on_message=lambda ch, d: messages.append((ch, d)))
    conn.connection_made(FakeTransport())
    expected = [value for kind, value in stream if kind == "reply"]
    conn.call_many([("PING",)] * len(expected), [got.append] * len(expected))
    wire = b"".join(_resp(value) if kind == "reply" else _resp([b"message", value[0], value[1]])
                    for kind, value in stream)
    points = sorted({c % (len(wire) + 1) for c in cuts}) + [len(wire)]
    prev = 0
    for p in points:
        if p > prev:
            conn.data_received(wire[prev:p])
        prev = p
    assert len(got) == len(expected) and conn.pending == 0

    def same(a: Any, b: Any) -> bool:
        if isinstance(b, RedisError):
            return isinstance(a, RedisError) and str(a) == str(b)
        if isinstance(b, list):
            return isinstance(a, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b

    assert all(same(a, b) for a, b in zip(got, expected))
    assert messages == [value for kind, value in stream if kind == "push"]
