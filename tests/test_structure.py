"""The architecture as written in docs/ARCHITECTURE.md, checked against the code.

* The module map lists every module of ``reactor/`` and nothing else.
* Each module imports only modules listed above it in that table (type-only
  imports included): the layers point one way.
* ``mypy --strict`` passes on ``reactor/`` and the package ships ``py.typed``.
* A transport needs only the loop layer's contract: it runs on a plain
  ``BaseReactor``.
"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reactor import BaseReactor, DatagramProtocol, Protocol
from reactor.datagrams import DatagramTransport
from reactor.streams import StreamTransport

from .conftest import run_until

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reactor"


def documented_modules() -> list[str]:
    """Module names in the order of the module map's rows."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `reactor/(\w+)\.py` \|", section, re.M)


def imported_modules(path: Path) -> set[str]:
    """The reactor modules *path* imports, at any depth (TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("reactor."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("reactor."))
    return found


def test_the_module_map_lists_exactly_the_modules_that_exist():
    listed = documented_modules()
    existing = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == existing


def test_each_module_imports_only_the_layers_above_it():
    order = documented_modules()
    violations = []
    for rank, name in enumerate(order):
        for imported in imported_modules(PACKAGE / f"{name}.py"):
            if imported not in order[:rank]:
                violations.append(f"{name} imports {imported}, which is not above it")
    assert violations == []


def test_the_layer_check_sees_a_type_only_back_edge(tmp_path):
    """The checker itself: a TYPE_CHECKING import of a higher layer is found."""
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .network import Reactor\n")
    assert imported_modules(module) == {"network"}


def test_mypy_strict_is_clean_and_the_package_is_typed():
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    assert (PACKAGE / "py.typed").exists()
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "reactor"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


class Echo(Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.lost = None

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost = ("lost", exc)


def test_a_stream_transport_runs_on_a_plain_base_reactor(selector_class):
    reactor = BaseReactor(selector=selector_class())
    a, b = socket.socketpair()
    try:
        protocol = Echo()
        transport = StreamTransport(reactor, a, protocol)
        assert reactor.connections() == [transport]
        b.sendall(b"ping")
        b.setblocking(False)
        got = bytearray()

        def echoed():
            try:
                got.extend(b.recv(100))
            except BlockingIOError:
                pass
            return bytes(got) == b"ping"
        run_until(reactor, echoed)
        assert reactor.stats().bytes_received == 4 and reactor.stats().connections_open == 1
        transport.close()
        run_until(reactor, lambda: protocol.lost == ("lost", None))
        assert reactor.connections() == [] and a.fileno() == -1
    finally:
        b.close()
        reactor.close()


def test_a_datagram_transport_runs_on_a_plain_base_reactor(selector_class):
    reactor = BaseReactor(selector=selector_class())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    got = []

    class Sink(DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(data)

    transport = DatagramTransport(reactor, sock, Sink())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"hello", sock.getsockname())
            run_until(reactor, lambda: got == [b"hello"])
    finally:
        reactor.close()  # the registry ends the transport and closes its socket
    assert sock.fileno() == -1 and transport.is_closing()


def test_py_typed_is_shipped_in_the_package_data():
    cfg = (ROOT / "setup.cfg").read_text()
    assert re.search(r"\[options\.package_data\]\s*\nreactor = py\.typed", cfg)


def test_plain_servers_do_not_import_ssl():
    """ssl costs ~4 MiB of RSS per process: only TLS users pay it."""
    code = ("import sys\nfrom reactor import Protocol, Reactor\n"
            "with Reactor() as r:\n    l = r.listen_tcp(Protocol, '127.0.0.1', 0)\n"
            "    c = r.connect_tcp(Protocol, *l.address)\n    r.run_once(0)\n"
            "    c.cancel(); l.close()\n"
            "print('ssl' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
