"""The send buffer alone, and the transport's write path against a fake socket."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor import Protocol, Reactor
from reactor.buffers import COALESCE_LIMIT, SendBuffer

from .conftest import examples

payloads = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=COALESCE_LIMIT - 2, max_size=COALESCE_LIMIT + 2),
    st.integers(min_value=0, max_value=20_000).map(lambda n: bytes(range(256)) * (n // 256) + b"x" * (n % 256)),
)
kinds = st.sampled_from(["bytes", "bytearray", "memoryview", "memoryview-of-bytearray"])


def as_kind(data: bytes, kind: str):
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    return memoryview(bytearray(data))


@given(ops=st.lists(st.one_of(
    st.tuples(st.just("write"), payloads, kinds),
    st.tuples(st.just("send"), st.integers(min_value=1, max_value=64), st.integers(min_value=0, max_value=50_000)),
), max_size=40))
def test_buffer_delivers_every_byte_once_in_order(ops):
    buf, written, sent = SendBuffer(), bytearray(), bytearray()
    for op in ops:
        if op[0] == "write":
            data = as_kind(op[1], op[2])
            buf.append(data)
            written += op[1]
            if not isinstance(data, bytes):  # the caller reuses its buffer
                target = data.obj if isinstance(data, memoryview) and isinstance(data.obj, bytearray) else data
                if isinstance(target, bytearray) and len(target):
                    target[0] ^= 0xFF
        elif buf:
            _, max_count, budget = op
            views = buf.views(max_count)
            assert 1 <= len(views) <= max_count
            taken = b"".join(bytes(v) for v in views)[:budget]  # the kernel takes a prefix
            del views
            buf.advance(len(taken))
            sent += taken
        assert len(buf) == len(written) - len(sent)
    while buf:
        chunk = bytes(buf.first())
        buf.advance(len(chunk))
        sent += chunk
    assert sent == written


def test_large_bytes_are_not_copied():
    payload = b"x" * (COALESCE_LIMIT * 4)
    buf = SendBuffer()
    buf.append(payload)
    buf.advance(10)
    view = buf.first()
    assert view.obj is payload and len(view) == len(payload) - 10


def test_small_writes_are_coalesced_into_one_chunk():
    buf = SendBuffer()
    for _ in range(100):
        buf.append(b"line\r\n")
    assert buf.chunk_count() == 1 and len(buf) == 600


def test_exported_tail_is_sealed_not_resized():
    buf = SendBuffer()
    buf.append(b"abc")
    views = buf.views(8)  # held, as sendmsg would during the call
    buf.append(b"def")  # must not resize the viewed bytearray (BufferError)
    assert bytes(views[0]) == b"abc" and buf.chunk_count() == 2


def test_advance_past_the_end_is_an_error():
    buf = SendBuffer()
    buf.append(b"abc")
    with pytest.raises(ValueError):
        buf.advance(4)
    with pytest.raises(ValueError):
        buf.advance(-1)
    assert len(buf) == 3


def test_advance_errors_say_what_was_asked_and_what_is_buffered():
    buf = SendBuffer()
    buf.append(b"abc")
    with pytest.raises(ValueError, match=r"^cannot advance by 5: 3 bytes buffered$"):
        buf.advance(5)
    with pytest.raises(IndexError, match=r"^the send buffer is empty$"):
        SendBuffer().first()


def test_advance_by_zero_is_the_kernel_taking_nothing():
    buf = SendBuffer()
    buf.advance(0)  # empty: nothing to forget, and no error
    buf.append(b"abc")
    buf.advance(0)
    assert len(buf) == 3 and bytes(buf.first()) == b"abc"


def test_an_empty_buffer_has_no_chunks_before_and_after_use():
    buf = SendBuffer()
    assert buf.chunk_count() == 0 and buf.views(4) == [] and not buf
    buf.append(b"x" * (2 * COALESCE_LIMIT))
    buf.advance(len(buf))
    assert buf.chunk_count() == 0 and buf.views(4) == [] and not buf


def test_views_and_first_are_memoryviews_over_the_buffered_bytes():
    """Zero-copy slices for the kernel, whatever the chunk is underneath."""
    buf = SendBuffer()
    buf.append(b"small")  # coalesced into a bytearray
    buf.append(b"L" * COALESCE_LIMIT)  # kept as a view of the bytes
    buf.append(b"tail")  # a second bytearray
    for views in (buf.views(1), buf.views(2), buf.views(3), buf.views(8), [buf.first()]):
        assert views and all(type(v) is memoryview for v in views)
    assert [bytes(v) for v in buf.views(8)] == [b"small", b"L" * COALESCE_LIMIT, b"tail"]


def test_views_returns_at_most_max_count_chunks_from_the_front():
    buf = SendBuffer()
    for i in range(3):  # small, big, small: three chunks
        buf.append(b"s%d" % i if i != 1 else b"B" * COALESCE_LIMIT)
    assert buf.chunk_count() == 3
    assert [bytes(v) for v in buf.views()] == [b"s0"]  # one by default: for a plain send()
    assert [bytes(v) for v in buf.views(1)] == [b"s0"]
    assert [bytes(v) for v in buf.views(2)] == [b"s0", b"B" * COALESCE_LIMIT]
    assert len(buf.views(3)) == 3 and len(buf.views(1024)) == 3


def test_views_of_exactly_every_chunk_seal_the_tail():
    buf = SendBuffer()
    buf.append(b"B" * COALESCE_LIMIT)
    buf.append(b"abc")  # the tail bytearray
    views = buf.views(2)  # exactly the chunk count: the tail is exported
    buf.append(b"def")  # must not resize it (BufferError) nor change what the view shows
    assert [bytes(v) for v in views] == [b"B" * COALESCE_LIMIT, b"abc"]
    assert bytes(b"".join(bytes(v) for v in buf.views(8))) == b"B" * COALESCE_LIMIT + b"abcdef"


def test_first_seals_a_lone_tail():
    buf = SendBuffer()
    buf.append(b"abc")
    view = buf.first()  # held, as send() would during the call
    buf.append(b"def")
    assert bytes(view) == b"abc" and b"".join(bytes(v) for v in buf.views(8)) == b"abcdef"


def test_a_partly_sent_lone_tail_is_sealed():
    buf = SendBuffer()
    buf.append(b"abc")
    buf.advance(1)  # the rest becomes a view of the bytearray: it can no longer grow
    buf.append(b"def")
    assert b"".join(bytes(v) for v in buf.views(8)) == b"bcdef"


def test_a_partial_send_slices_without_copying():
    buf = SendBuffer()
    buf.append(b"abcdef")  # a coalesced bytearray
    before = buf.first()
    buf.advance(2)
    after = buf.first()
    assert bytes(after) == b"cdef" and after.obj is before.obj  # the same bytearray, not a copy


def test_clear_then_append_starts_afresh():
    buf = SendBuffer()
    buf.append(b"abc")
    buf.clear()
    assert not buf and buf.chunk_count() == 0
    buf.append(b"def")
    buf.append(b"ghi")
    assert buf.chunk_count() == 1 and bytes(buf.first()) == b"defghi"


def test_the_coalescing_boundary():
    at_limit = b"x" * COALESCE_LIMIT
    buf = SendBuffer()
    buf.append(at_limit)  # not below the limit: kept as a view, not copied
    assert buf.first().obj is at_limit
    below = SendBuffer()
    below.append(b"a")
    below.append(b"y" * (COALESCE_LIMIT - 1))  # below: copied into the tail
    assert below.chunk_count() == 1 and len(below) == COALESCE_LIMIT


@pytest.mark.parametrize("shape", ["I", "2d"])
@pytest.mark.parametrize("size", [64, 4 * COALESCE_LIMIT])
def test_views_of_other_formats_and_shapes_are_counted_in_bytes(shape, size):
    """A memoryview of 4-byte items, or of rows, is buffered as its raw bytes."""
    raw = (bytes(range(256)) * (size // 256 + 1))[:size]
    view = memoryview(raw).cast("I") if shape == "I" else memoryview(raw).cast("B", (size // 16, 16))
    buf = SendBuffer()
    buf.append(view)
    assert len(buf) == size
    buf.advance(3)  # not a whole item, not a whole row
    assert len(buf) == size - 3
    assert b"".join(bytes(v) for v in buf.views(8)) == raw[3:]


# -- the transport's write path, with a socket that takes what it likes -------------

class FlakySocket:
    """A stream socket whose send()/sendmsg() follow a script.

    Each step of *schedule* is an int (take at most that many bytes), or
    "block" (BlockingIOError) or "intr" (InterruptedError); past its end,
    everything is taken. The selector watches a real socketpair end, which is
    always writable, so the reactor calls the writer whenever it is registered.
    """

    family = socket.AF_UNIX

    def __init__(self, schedule):
        self._real, self._other = socket.socketpair()
        self._schedule = list(schedule)
        self.received = bytearray()
        self.sendmsg_calls = 0

    def fileno(self):
        return self._real.fileno()

    def setblocking(self, flag):
        pass

    def getsockname(self):
        return "fake"

    def getpeername(self):
        return "peer"

    def _take(self, data: bytes) -> int:
        step = self._schedule.pop(0) if self._schedule else len(data)
        if step == "block":
            raise BlockingIOError
        if step == "intr":
            raise InterruptedError
        n = min(step, len(data))
        self.received += data[:n]
        return n

    def send(self, data):
        return self._take(bytes(data))

    def sendmsg(self, buffers):
        self.sendmsg_calls += 1
        return self._take(b"".join(bytes(b) for b in buffers))

    def recv(self, n):
        raise BlockingIOError

    def shutdown(self, how):
        pass

    def close(self):
        self._real.close()
        self._other.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


step = st.one_of(st.integers(min_value=0, max_value=5000), st.sampled_from(["block", "intr"]))


@settings(max_examples=examples(60))
# Each write is one write(data), or (a list) one writelines() of several.
@given(writes=st.lists(st.tuples(st.one_of(payloads, st.lists(payloads, max_size=5)), kinds,
                                 st.integers(min_value=0, max_value=2)), max_size=25),
       schedule=st.lists(step, max_size=60))
def test_transport_delivers_all_writes_in_order_whatever_the_socket_takes(writes, schedule):
    sock = FlakySocket(schedule)
    events = []

    class Writer(Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def pause_writing(self):
            events.append("pause")

        def resume_writing(self):
            events.append("resume")

        def connection_lost(self, exc):
            events.append(("lost", exc))

    protocol = Writer()
    with Reactor() as reactor, sock:
        from reactor.streams import StreamTransport
        transport = StreamTransport(reactor, sock, protocol)
        transport.set_write_buffer_limits(high=8000, low=2000)
        reactor.run_once(0)  # connection_made
        expected = bytearray()
        for data, kind, iterations in writes:
            if isinstance(data, list):
                transport.writelines([as_kind(d, kind) for d in data])
                expected += b"".join(data)
            else:
                transport.write(as_kind(data, kind))
                expected += data
            assert transport.get_write_buffer_size() == len(expected) - len(sock.received)
            for _ in range(iterations):
                reactor.run_once(0)
        transport.close()
        for _ in range(len(schedule) + 2 * len(writes) + 10):
            if events and events[-1] == ("lost", None):
                break
            reactor.run_once(0)
        assert events[-1] == ("lost", None)
    assert bytes(sock.received) == bytes(expected)
    # pause and resume strictly alternate, starting with pause, and the
    # drained buffer ends resumed
    flow = [e for e in events if e in ("pause", "resume")]
    assert flow == ["pause", "resume"] * (len(flow) // 2)



def test_writelines_on_an_idle_connection_is_one_vectored_send():
    sock = FlakySocket([])
    with Reactor() as reactor, sock:
        from reactor.streams import StreamTransport
        transport = StreamTransport(reactor, sock, Protocol())
        reactor.run_once(0)
        lines = [b"line %d\r\n" % i for i in range(50)] + [b"x" * (4 * COALESCE_LIMIT)]
        transport.writelines(lines)
        assert sock.sendmsg_calls == 1 and bytes(sock.received) == b"".join(lines)
        assert transport.get_write_buffer_size() == 0
        with pytest.raises(TypeError):
            transport.writelines([b"ok", "text"])
        assert transport.get_write_buffer_size() == 0 and bytes(sock.received) == b"".join(lines)
        transport.abort()
        reactor.run_once(0)


def test_close_from_resume_writing_takes_the_socket_out_of_the_selector():
    sock = FlakySocket([100, "block"])
    fd = sock.fileno()
    events = []

    class Closer(Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def resume_writing(self):
            events.append("resume")
            self.transport.close()  # the buffer has just drained: close at once

        def connection_lost(self, exc):
            events.append(("lost", exc))

    with Reactor() as reactor, sock:
        from reactor.streams import StreamTransport
        transport = StreamTransport(reactor, sock, Closer())
        transport.set_write_buffer_limits(high=10, low=0)
        reactor.run_once(0)
        transport.write(b"x" * 1000)  # 100 sent, 900 buffered: over high water
        for _ in range(10):
            if ("lost", None) in events:
                break
            reactor.run_once(0)
        assert events == ["resume", ("lost", None)] and bytes(sock.received) == b"x" * 1000
        assert fd not in [key.fd for key in reactor._selector.get_map().values()]
