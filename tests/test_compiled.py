"""The build that is running: pure Python, or the core compiled with mypyc (setup.py).

The suite runs against both (.ci/run, then .ci/run-compiled). These tests
pin what differs between them: ``reactor.COMPILED`` tells the truth, the
core modules are all compiled or none is, and the classes users subclass
stay interpreted so that their subclasses work the same in both builds.
"""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path
from typing import Any

import reactor
from reactor import (BufferedProtocol, DatagramProtocol, LengthPrefixFramer, LineFramer, LineProtocol,
                     NetstringFramer, Protocol, Reactor)
from reactor.instruments import Instrument

from .conftest import run_until

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def compiled_modules() -> list[str]:
    """setup.py's list, read from setup.py itself (it is not importable as a module)."""
    namespace: dict[str, Any] = {}
    source = (ROOT / "setup.py").read_text(encoding="utf-8")
    start = source.index("COMPILED_MODULES = [")
    exec(source[start:source.index("]", start) + 1], namespace)
    return list(namespace["COMPILED_MODULES"])


def is_extension(module_name: str) -> bool:
    module = importlib.import_module(module_name)
    return (module.__file__ or "").endswith(EXTENSIONS)


def test_compiled_says_which_build_runs_and_the_core_is_all_of_one_kind():
    assert isinstance(reactor.COMPILED, bool)
    kinds = {name: is_extension(f"reactor.{name}") for name in compiled_modules()}
    assert set(kinds.values()) == {reactor.COMPILED}, kinds


def test_the_classes_users_subclass_stay_interpreted():
    for name in ("protocols", "instruments", "framing", "errors"):
        assert not is_extension(f"reactor.{name}"), name
        assert name not in compiled_modules()


def test_user_subclasses_work_in_either_build():
    """Each kind of user class, subclassed here (interpreted), driven by the loop."""
    got: list[Any] = []

    class Lines(LineProtocol):
        def line_received(self, line: bytes) -> None:
            got.append(("line", line))

    class Buffered(BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(64)

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            got.append(("buffered", bytes(self.buf[:nbytes])))

    class Sender(Protocol):
        def __init__(self, payload: bytes) -> None:
            self.payload = payload

        def connection_made(self, transport: Any) -> None:
            transport.write(self.payload)

    class Datagrams(DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(("datagram", data))

    class Counter(Instrument):
        def __init__(self) -> None:
            self.opened = 0

        def connection_opened(self, transport: Any) -> None:
            self.opened += 1

    class Upper(LineFramer):
        def next_frame(self) -> Any:
            frame = super().next_frame()
            return frame.upper() if frame is not None else None

    framer = Upper(max_length=100)
    framer.feed(b"abc\n")
    assert framer.next_frame() == b"ABC"
    assert LengthPrefixFramer(max_length=10) and NetstringFramer(max_length=10)  # constructible

    counter = Counter()
    with Reactor() as loop:
        loop.add_instrument(counter)
        lines = loop.listen_tcp(Lines, "127.0.0.1", 0)
        buffered = loop.listen_tcp(Buffered, "127.0.0.1", 0)
        loop.connect_tcp(lambda: Sender(b"one\n"), *lines.address)
        loop.connect_tcp(lambda: Sender(b"two"), *buffered.address)
        receiver = loop.open_udp(Datagrams, local_addr=("127.0.0.1", 0))
        sender = loop.open_udp(DatagramProtocol, remote_addr=receiver.get_extra_info("sockname"))
        sender.sendto(b"three")
        run_until(loop, lambda: len(got) == 3)
    assert sorted(got) == [("buffered", b"two"), ("datagram", b"three"), ("line", b"one")]
    assert counter.opened == 6  # two accepted, two connected, two UDP endpoints

