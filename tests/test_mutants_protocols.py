"""LineProtocol's behaviours that mutation testing found unpinned (docs/TESTING.md).

Sans-IO: a transport that records what it is asked, so every line and
every callback can be checked without a socket.
"""

from __future__ import annotations

import pytest

from reactor import FrameTooLong, LineProtocol


class RecordingTransport:
    def __init__(self):
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.written.append(bytes(data))

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed


class Lines(LineProtocol):
    max_line_length = 8

    def __init__(self, keep_going=False):
        self.lines: list[bytes] = []
        self.too_long: list[FrameTooLong] = []
        self.keep_going = keep_going

    def line_received(self, line):
        self.lines.append(line)

    def line_too_long(self, exc):
        self.too_long.append(exc)
        if not self.keep_going:
            super().line_too_long(exc)


def test_line_too_long_gets_the_error_with_its_lengths():
    protocol = Lines(keep_going=True)
    protocol.connection_made(RecordingTransport())
    protocol.data_received(b"x" * 20 + b"\n")
    [exc] = protocol.too_long
    assert isinstance(exc, FrameTooLong) and exc.max_length == 8


def test_lines_after_a_long_one_in_the_same_chunk_are_received():
    protocol = Lines(keep_going=True)
    protocol.connection_made(RecordingTransport())
    protocol.data_received(b"x" * 20 + b"\nok\nfine\n")
    assert len(protocol.too_long) == 1
    assert protocol.lines == [b"ok", b"fine"]


def test_the_default_closes_and_later_lines_are_not_delivered():
    protocol = Lines()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"x" * 20 + b"\nnot for anyone\n")
    assert transport.closed and protocol.lines == []


def test_send_line_writes_the_line_and_crlf():
    protocol = Lines()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.send_line(b"hello")
    protocol.send_line(bytearray(b"again"))
    assert transport.written == [b"hello\r\n", b"again\r\n"]


def test_send_line_before_connection_made_is_refused_clearly():
    with pytest.raises(RuntimeError, match=r"^send_line\(\) before connection_made\(\)$"):
        Lines().send_line(b"too early")
