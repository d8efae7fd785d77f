"""Framers: table-driven cases, then the property that splitting never matters."""

from __future__ import annotations

from typing import Callable, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.errors import FrameTooLong, FramingError
from reactor.framing import LengthPrefixFramer, LineFramer, NetstringFramer

Event = Union[bytes, str]  # a frame, or the name of an error class


def run(framer, chunks: list[bytes]) -> list[Event]:
    """Feed *chunks* one by one, draining after each: frames and errors in order."""
    events: list[Event] = []
    for chunk in chunks:
        try:
            framer.feed(chunk)
        except FramingError as exc:  # a broken framer refuses more input
            events.append(type(exc).__name__)
            return events
        while True:
            try:
                frame = framer.next_frame()
            except FrameTooLong:
                events.append("FrameTooLong")
                continue
            except FramingError:
                events.append("FramingError")
                return events
            if frame is None:
                break
            events.append(frame)
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in points + [len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


# -- lines -----------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"a\nb\r\nc", [b"a", b"b"]),
    (b"\n\r\n", [b"", b""]),
    (b"a\rb\n", [b"a\rb"]),  # a lone \r is content
    (b"ab\r\r\n", [b"ab\r"]),  # only one \r belongs to the terminator
    (b"abcd\nxy\n", ["FrameTooLong", b"xy"]),
    (b"abc\r\n", [b"abc"]),  # exactly max_length
    (b"abcdefgh", ["FrameTooLong"]),  # too long, no newline yet: error now
])
def test_line_framer_cases(data, expected):
    assert run(LineFramer(max_length=3), [data]) == expected


def test_line_framer_waits_for_the_newline_after_a_cr_at_the_limit():
    framer = LineFramer(max_length=3)
    assert run(framer, [b"abc\r"]) == []  # could still be a \r\n
    assert run(framer, [b"\n"]) == [b"abc"]


def test_line_framer_discards_a_long_line_without_buffering_it():
    framer = LineFramer(max_length=100)
    assert run(framer, [b"x" * 150]) == ["FrameTooLong"]
    for _ in range(1000):  # a peer sending 1 MB without a newline
        assert run(framer, [b"x" * 1000]) == []
        assert framer.buffered <= 100 + 1
    assert run(framer, [b"tail\nnext\n"]) == [b"next"]


def test_line_framer_feeding_without_draining_is_the_callers_memory():
    framer = LineFramer(max_length=10)
    framer.feed(b"12345")
    framer.feed(b"678901234")
    assert framer.buffered == 14  # feed() alone never parses, so never discards
    assert run(framer, [b"\n"]) == ["FrameTooLong"]
    assert framer.buffered == 0


# -- length prefix -----------------------------------------------------------

def test_length_prefix_roundtrip_and_limits():
    framer = LengthPrefixFramer(max_length=5, header_size=2)
    data = framer.encode(b"hello") + (9).to_bytes(2, "big") + b"123456789" + framer.encode(b"")
    assert run(framer, [data]) == [b"hello", "FrameTooLong", b""]
    with pytest.raises(FrameTooLong):
        framer.encode(b"123456")


def test_length_prefix_skips_a_huge_frame_as_it_arrives():
    framer = LengthPrefixFramer(max_length=10, header_size=4)
    assert run(framer, [(2**31).to_bytes(4, "big") + b"z" * 100]) == ["FrameTooLong"]
    assert framer.buffered == 0
    assert framer._skip == 2**31 - 100


@pytest.mark.parametrize("header_size", [1, 2, 4, 8])
@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_length_prefix_headers(header_size, byteorder):
    framer = LengthPrefixFramer(max_length=200, header_size=header_size, byteorder=byteorder)
    payloads = [b"", b"a", b"x" * 200]
    assert run(framer, [b"".join(framer.encode(p) for p in payloads)]) == payloads


def test_length_prefix_rejects_bad_configuration():
    with pytest.raises(ValueError):
        LengthPrefixFramer(header_size=3)
    with pytest.raises(ValueError):
        LengthPrefixFramer(byteorder="middle")
    with pytest.raises(ValueError):
        LineFramer(max_length=-1)


# -- netstrings --------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"5:hello,0:,", [b"hello", b""]),
    (b"12:hello world!,", ["FrameTooLong"]),
    (b"12:hello world!,1:x,", ["FrameTooLong", b"x"]),
    (b"5:hello!", ["FramingError"]),
    (b"05:hello,", ["FramingError"]),
    (b"x:", ["FramingError"]),
    (b":", ["FramingError"]),
    (b"9" * 21, ["FramingError"]),
    (b"12:hello world!;", ["FrameTooLong", "FramingError"]),
])
def test_netstring_cases(data, expected):
    assert run(NetstringFramer(max_length=10), [data]) == expected


def test_netstring_broken_stays_broken():
    framer = NetstringFramer()
    assert run(framer, [b"a:"]) == ["FramingError"]
    with pytest.raises(FramingError):
        framer.feed(b"1:x,")
    with pytest.raises(FramingError):
        framer.next_frame()


# -- every split gives the same result ------------------------------------------

FRAMERS: dict[str, Callable[[], object]] = {
    "line": lambda: LineFramer(max_length=8),
    "length2": lambda: LengthPrefixFramer(max_length=8, header_size=2),
    "length4le": lambda: LengthPrefixFramer(max_length=8, header_size=4, byteorder="little"),
    "netstring": lambda: NetstringFramer(max_length=8),
}


def _line_stream():
    piece = st.one_of(
        st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
        st.sampled_from([b"\n", b"\r\n", b"\r", b"\r\r\n"]),
    )
    return st.lists(piece, max_size=20).map(b"".join)


def _length_stream(header_size: int, byteorder: str):
    frame = st.binary(max_size=12).map(
        lambda p: len(p).to_bytes(header_size, byteorder) + p)
    return st.lists(st.one_of(frame, st.binary(max_size=3)), max_size=10).map(b"".join)


def _netstring_stream():
    good = st.binary(max_size=12).map(lambda p: b"%d:%s," % (len(p), p))
    noise = st.sampled_from([b"0", b"1", b":", b",", b"x", b"01:", b"99999999999999999999999"])
    return st.lists(st.one_of(good, good, good, noise), max_size=10).map(b"".join)


STREAMS = {
    "line": _line_stream(),
    "length2": _length_stream(2, "big"),
    "length4le": _length_stream(4, "little"),
    "netstring": _netstring_stream(),
}


@pytest.mark.parametrize("kind", list(FRAMERS))
@given(data=st.data())
def test_any_split_yields_the_same_frames_and_errors(kind, data):
    stream = data.draw(STREAMS[kind] | st.binary(max_size=60), label="stream")
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=len(stream) + 1), label="cuts")
    whole = run(FRAMERS[kind](), [stream])
    assert run(FRAMERS[kind](), split(stream, cuts)) == whole
    # and byte by byte, the worst case for resumption
    assert run(FRAMERS[kind](), [stream[i:i + 1] for i in range(len(stream))]) == whole


@pytest.mark.parametrize("kind", list(FRAMERS))
@given(data=st.data())
def test_memory_stays_bounded_by_the_limit_plus_one_read(kind, data):
    stream = data.draw(STREAMS[kind] | st.binary(max_size=200), label="stream")
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=30), label="cuts")
    framer = FRAMERS[kind]()
    header = 20 + 1 if kind == "netstring" else 4
    for chunk in split(stream, cuts):
        if run(framer, [chunk])[-1:] == ["FramingError"]:
            break
        # after draining, a framer holds at most one frame in progress
        assert framer.buffered <= framer.max_length + header + 2


@given(lines=st.lists(st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r"))),
       crlf=st.lists(st.booleans()), cuts=st.lists(st.integers(min_value=0)))
def test_line_framer_returns_exactly_the_lines_sent(lines, crlf, cuts):
    stream = b"".join(line + (b"\r\n" if (crlf[i] if i < len(crlf) else False) else b"\n")
                      for i, line in enumerate(lines))
    assert run(LineFramer(max_length=8), split(stream, cuts)) == lines


# -- details that mutation testing found unpinned (docs/TESTING.md) ------------------

def test_bad_configuration_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"^max_length must be >= 0, got -1$"):
        LineFramer(max_length=-1)
    with pytest.raises(ValueError, match=r"^header_size must be 1, 2, 4 or 8, got 3$"):
        LengthPrefixFramer(header_size=3)
    with pytest.raises(ValueError, match=r"^byteorder must be 'big' or 'little', got 'middle'$"):
        LengthPrefixFramer(byteorder="middle")


def test_length_prefix_defaults_to_a_four_byte_big_endian_header():
    framer = LengthPrefixFramer()
    assert framer.encode(b"abc") == b"\0\0\0\3abc"
    assert run(framer, [b"\0\0\0\3abc"]) == [b"abc"]


def too_long(call) -> FrameTooLong:
    with pytest.raises(FrameTooLong) as info:
        call()
    return info.value


def test_frame_too_long_says_how_long_and_what_the_limit_is():
    exc = too_long(lambda: LengthPrefixFramer(max_length=5).encode(b"123456"))
    assert (str(exc), exc.length, exc.max_length) == ("frame of 6 bytes is longer than 5", 6, 5)

    framer = LengthPrefixFramer(max_length=5, header_size=2)
    framer.feed(b"\0\11")
    exc = too_long(framer.next_frame)
    assert (str(exc), exc.length, exc.max_length) == ("frame of 9 bytes is longer than 5", 9, 5)

    framer = LineFramer(max_length=3)
    framer.feed(b"abcd")  # no newline yet: the length is not known
    exc = too_long(framer.next_frame)
    assert (str(exc), exc.length, exc.max_length) == ("line longer than 3 bytes", None, 3)

    framer = LineFramer(max_length=3)
    framer.feed(b"abcd\n")
    exc = too_long(framer.next_frame)
    assert (str(exc), exc.length, exc.max_length) == ("line of 4 bytes is longer than 3", 4, 3)

    framer = NetstringFramer(max_length=3)
    framer.feed(b"12:")
    exc = too_long(framer.next_frame)
    assert (str(exc), exc.length, exc.max_length) == ("netstring of 12 bytes is longer than 3", 12, 3)

    exc = too_long(lambda: NetstringFramer(max_length=3).encode(b"abcd"))
    assert (str(exc), exc.length, exc.max_length) == ("netstring of 4 bytes is longer than 3", 4, 3)


def test_encoders_round_trip():
    assert LineFramer.encode(b"hi") == b"hi\r\n" and LineFramer.encode(bytearray(b"")) == b"\r\n"
    netstrings = NetstringFramer(max_length=5)
    assert netstrings.encode(b"hello") == b"5:hello," and netstrings.encode(memoryview(b"")) == b"0:,"
    assert run(NetstringFramer(max_length=5), [netstrings.encode(b"hello")]) == [b"hello"]


def test_frames_returns_every_complete_frame_and_keeps_the_rest():
    framer = LineFramer()
    framer.feed(b"a\nb\r\npartial")
    assert framer.frames() == [b"a", b"b"] and framer.buffered == len(b"partial")
    assert framer.frames() == []


@pytest.mark.parametrize("drain_after_error", [True, False])
def test_after_a_long_line_the_next_byte_can_end_it(drain_after_error):
    framer = LineFramer(max_length=3)
    framer.feed(b"abcdef")
    with pytest.raises(FrameTooLong):
        framer.next_frame()
    if drain_after_error:  # (a consumer may, or may feed the next read at once)
        assert framer.next_frame() is None
    framer.feed(b"\nxy\n")  # the long line ends at the very first byte
    assert framer.next_frame() == b"xy"


@pytest.mark.parametrize("data, message", [
    (b"5:hello!", "netstring payload not followed by ','"),
    (b"12:hello world!;", "netstring payload not followed by ','"),  # after a skipped one
    (b"05", "netstring length has a leading zero"),  # known before the ':' arrives
    (b"0001:x,", "bad netstring length header b'0001'"),  # the header whole: a bad one
    (b"05:hello,", "bad netstring length header b'05'"),
    (b":", "bad netstring length header b''"),
    (b"x:", "bad netstring length header b'x'"),
    (b"1" * 30, "bad netstring length header b'" + "1" * 21 + "'"),  # 21 digits: too many
    (b"1" * 21 + b":", "bad netstring length header b'" + "1" * 21 + "'"),
    (b"1" * 25 + b":", "bad netstring length header b'" + "1" * 21 + "'"),
])
def test_netstring_errors_say_what_is_wrong(data, message):
    framer = NetstringFramer(max_length=10)
    framer.feed(data)
    for _ in range(3):
        try:
            framer.next_frame()
        except FrameTooLong:
            continue  # a skipped netstring came first: the error is next
        except FramingError as exc:
            assert type(exc) is FramingError and str(exc) == message
            return
    raise AssertionError(f"no FramingError for {data!r}")


def test_netstring_lengths_with_up_to_twenty_digits_are_numbers():
    framer = NetstringFramer(max_length=10)
    framer.feed(b"1" * 20)  # twenty digits and no ':' yet: a header still arriving
    assert framer.next_frame() is None
    framer.feed(b":")
    exc = too_long(framer.next_frame)
    assert exc.length == int("1" * 20)
    assert run(NetstringFramer(max_length=10), [b"9:123456789,"]) == [b"123456789"]  # the digit 9


def test_a_netstring_of_exactly_max_length_is_accepted():
    assert run(NetstringFramer(max_length=10), [b"10:0123456789,"]) == [b"0123456789"]
    assert run(LengthPrefixFramer(max_length=10, header_size=1), [b"\12" + b"x" * 10]) == [b"x" * 10]
