"""Listener behaviours that mutation testing found unpinned (python -m tests.mutation).

Running out of descriptors is simulated in this process: ``Exhausted`` is a
listening socket whose ``accept()`` fails with EMFILE when its script says
so, the way Linux's does when the process has no descriptor left (the
subprocess tests in test_accept_limits.py run out for real, but mutmut
cannot trace into a subprocess). The shedding path (``_accept``, the bare
accept the listener uses to turn peers away) works unless ``no_spare`` is
set, as when the whole system is out.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

import pytest

from reactor import Listener, Protocol, Reactor
from reactor.listeners import ACCEPT_BATCH, ACCEPT_RETRY_DELAY
from reactor.testing import VirtualClock

from .conftest import run_until


class Exhausted(socket.socket):
    """A listening TCP socket on loopback whose accept() follows a script."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen(128)
        self.setblocking(False)
        self.script: list[str] = []  # "emfile" or "ok" per accept(); then "ok"
        self.no_spare = False

    def accept(self):
        step = self.script.pop(0) if self.script else "ok"
        if step == "emfile":
            raise OSError(errno.EMFILE, "Too many open files")
        if step == "aborted":  # the peer gave up while queued
            raise ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort")
        if step == "einval":  # the listener itself is broken
            raise OSError(errno.EINVAL, "Invalid argument")
        return super().accept()

    def _accept(self):
        if self.no_spare:
            raise OSError(errno.ENFILE, "Too many open files in system")
        return super()._accept()


class Server(Protocol):
    made: list = []

    def connection_made(self, transport):
        Server.made.append(transport)


@pytest.fixture
def clients():
    made: list[socket.socket] = []

    def connect(address, n=1):
        for _ in range(n):
            made.append(socket.create_connection(address, timeout=10))
        return made[-n:]
    yield connect
    for sock in made:
        sock.close()


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def turned_away(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "turning away" in r.getMessage()]


def test_repr_says_where_and_whether_it_accepts(reactor, clients):
    listener = reactor.listen_tcp(Server, "127.0.0.1", 0, max_connections=2)
    address = listener.address
    assert repr(listener) == f"<Listener {address!r} accepting connections=0>"
    clients(address)
    run_until(reactor, lambda: len(listener.connections) == 1)
    assert repr(listener) == f"<Listener {address!r} accepting connections=1>"
    clients(address, 2)
    run_until(reactor, lambda: "paused" in repr(listener))  # at its limit
    assert repr(listener) == f"<Listener {address!r} paused connections=2>"
    listener.close()
    assert repr(listener) == "<Listener None closed connections=2>"
    listener.close_connections()
    run_until(reactor, lambda: not reactor.connections())


def test_out_of_descriptors_the_waiting_peers_are_turned_away_and_counted(reactor, clients, caplog):
    lsock = Exhausted()
    listener = Listener(reactor, [lsock], Server)
    try:
        waiting = clients(lsock.getsockname(), 3)
        lsock.script = ["emfile"]
        with caplog.at_level(logging.WARNING, logger="reactor"):
            run_until(reactor, lambda: listener.accepts_shed == 3)
            assert all(closed_by_peer(sock) for sock in waiting)
            assert turned_away(caplog) == [
                f"listener {lsock.getsockname()!r}: accept() failed: [Errno 24] Too many open files; "
                "turning away peers (logged once per burst)"]
            assert reactor.stats().accepts_shed == 3 and listener.connections == set()
            # The same burst: no second warning.
            more = clients(lsock.getsockname(), 2)
            lsock.script = ["emfile"]
            run_until(reactor, lambda: listener.accepts_shed == 5)
            assert all(closed_by_peer(sock) for sock in more)
            assert len(turned_away(caplog)) == 1 and reactor.stats().accepts_shed == 5
            # A good accept ends the burst; the next one is logged again.
            clients(lsock.getsockname())
            run_until(reactor, lambda: len(listener.connections) == 1)
            clients(lsock.getsockname())
            lsock.script = ["emfile"]
            run_until(reactor, lambda: listener.accepts_shed == 6)
            assert len(turned_away(caplog)) == 2
        assert "accepting" in repr(listener)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_one_event_turns_away_at_most_the_batch_limit(reactor, clients):
    lsock = Exhausted()
    listener = Listener(reactor, [lsock], Server)
    try:
        clients(lsock.getsockname(), ACCEPT_BATCH + 6)
        lsock.script = ["emfile"]
        reactor.run_once(0)
        assert listener.accepts_shed == ACCEPT_BATCH
        run_until(reactor, lambda: len(listener.connections) == 6)  # the rest are served
        assert listener.accepts_shed == ACCEPT_BATCH
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_emfile_with_nobody_waiting_needs_no_backoff(reactor, clients, caplog):
    lsock = Exhausted()
    listener = Listener(reactor, [lsock], Server)
    try:
        clients(lsock.getsockname())
        lsock.script = ["ok", "emfile"]  # Linux: the accept after the last descriptor was taken
        with caplog.at_level(logging.WARNING, logger="reactor"):
            run_until(reactor, lambda: len(listener.connections) == 1)
        assert listener.accepts_shed == 0 and "accepting" in repr(listener)
        assert reactor.stats().readers == 1  # still watching its socket (nothing to wait for)
        assert len(turned_away(caplog)) == 1
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_when_shedding_fails_too_the_listener_backs_off_then_accepts_again(selector_class, clients):
    clock = VirtualClock()
    with Reactor(selector=selector_class(), clock=clock) as reactor:
        lsock = Exhausted()
        listener = Listener(reactor, [lsock], Server)
        clients(lsock.getsockname())
        lsock.script = ["emfile"]
        lsock.no_spare = True
        reactor.run_once(5)
        assert "paused" in repr(listener) and reactor.stats().readers == 0 and reactor.stats().timers_pending == 1
        lsock.no_spare = False
        clock.advance(ACCEPT_RETRY_DELAY - 0.001)
        reactor.run_once(0)
        assert "paused" in repr(listener)
        clock.advance(0.001)
        reactor.run_once(0)
        assert "accepting" in repr(listener) and reactor.stats().timers_pending == 0
        run_until(reactor, lambda: len(listener.connections) == 1)  # the peer that waited is served
        assert listener.accepts_shed == 0
        listener.close()
        listener.close_connections()


def test_a_peer_that_gave_up_is_skipped_and_the_batch_goes_on(reactor, clients):
    lsock = Exhausted()
    listener = Listener(reactor, [lsock], Server)
    try:
        clients(lsock.getsockname(), 2)
        lsock.script = ["aborted"]
        reactor.run_once(5)  # one event: the two waiting peers are accepted all the same
        assert len(listener.connections) == 2 and listener.accepts_shed == 0
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_a_failing_accept_is_reported_with_the_listener(reactor, clients):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    lsock = Exhausted()
    listener = Listener(reactor, [lsock], Server)
    try:
        clients(lsock.getsockname())
        lsock.script = ["einval"]
        run_until(reactor, lambda: errors)
        (ctx,) = errors
        assert ctx["message"] == f"accept() failed on {lsock.getsockname()!r}"
        assert ctx["exception"].errno == errno.EINVAL and ctx["listener"] is listener
        run_until(reactor, lambda: len(listener.connections) == 1)  # and it goes on accepting
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_a_descriptor_the_selector_cannot_watch_is_shed_at_once(reactor, clients, caplog):
    """``fd_limit`` is the first fd number the reactor's selector cannot watch
    (FD_SETSIZE under select()); lowered here to the number the next accept
    will get, instead of opening a thousand descriptors (test_accept_limits.py
    does that, in a subprocess)."""
    listener = reactor.listen_tcp(Server, "127.0.0.1", 0)
    try:
        clients(listener.address, 2)
        probe = os.open(os.devnull, os.O_RDONLY)
        os.close(probe)  # the lowest free number: what accept() returns next
        reactor.fd_limit = probe
        Server.made.clear()
        with caplog.at_level(logging.WARNING, logger="reactor"):
            reactor.run_once(5)  # one event: both peers (each gets that number again) are shed
        assert listener.accepts_shed == 2 and reactor.stats().accepts_shed == 2
        assert Server.made == [] and listener.connections == set()
        assert turned_away(caplog) == [
            f"listener {listener.address!r}: descriptor {probe} or above cannot be watched by "
            "Reactor's select(); use poll or epoll; turning away peers (logged once per burst)"]
    finally:
        listener.close()


def test_peer_hosts_are_one_string_each(reactor, clients):
    listener = reactor.listen_tcp(Server, "127.0.0.1", 0)
    try:
        clients(listener.address, 2)
        run_until(reactor, lambda: len(listener.connections) == 2)
        first, second = (t.get_extra_info("peername")[0] for t in listener.connections)
        assert first == "127.0.0.1" and first is second  # interned: ~60 bytes less per idle connection
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


# -- binding ----------------------------------------------------------------------------

def test_listen_tcps_defaults(reactor, clients):
    from reactor import listeners

    listener = listeners.listen_tcp(reactor, Server, "127.0.0.1")  # port 0: a free one
    try:
        port = listener.address[1]
        assert port != 1
        with pytest.raises(OSError) as refused:  # no SO_REUSEPORT unless asked for
            listeners.listen_tcp(reactor, Server, "127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE
        clients(listener.address)
        run_until(reactor, lambda: listener.connections)
        (transport,) = listener.connections
        assert transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_nodelay_false_leaves_nagle_on(reactor, clients):
    listener = reactor.listen_tcp(Server, "127.0.0.1", 0, nodelay=False)
    try:
        clients(listener.address)
        run_until(reactor, lambda: listener.connections)
        (transport,) = listener.connections
        assert not transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_host_none_listens_on_the_wildcard_addresses(reactor):
    listener = reactor.listen_tcp(Server, None, 0)
    try:
        assert {s.getsockname()[0] for s in listener.sockets} <= {"0.0.0.0", "::"}
        assert len({s.getsockname()[1] for s in listener.sockets}) == 1  # one port for all
    finally:
        listener.close()


def test_reuse_port_lets_two_listeners_share_a_port(reactor):
    first = reactor.listen_tcp(Server, "127.0.0.1", 0, reuse_port=True)
    try:
        second = reactor.listen_tcp(Server, "127.0.0.1", first.address[1], reuse_port=True)
        second.close()
    finally:
        first.close()


def test_a_port_in_use_is_refused_with_the_address_and_errno(reactor):
    first = reactor.listen_tcp(Server, None, 0)
    try:
        port = first.address[1]
        with pytest.raises(OSError) as refused:
            reactor.listen_tcp(Server, None, port)
        assert refused.value.errno == errno.EADDRINUSE
        sockaddr = first.sockets[0].getsockname()
        assert str(refused.value) == (f"[Errno {errno.EADDRINUSE}] cannot listen on {sockaddr!r}: "
                                      f"{os.strerror(errno.EADDRINUSE)}")
    finally:
        first.close()


def test_an_address_that_is_not_ours_is_refused_by_name(reactor):
    with pytest.raises(OSError) as refused:
        reactor.listen_tcp(Server, "192.0.2.1", 0)  # TEST-NET-1: on no interface here
    assert refused.value.errno == errno.EADDRNOTAVAIL
    assert str(refused.value) == (f"[Errno {errno.EADDRNOTAVAIL}] cannot listen on ('192.0.2.1', 0): "
                                  f"{os.strerror(errno.EADDRNOTAVAIL)}")


def fake_getaddrinfo(*addresses):
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port)) for a in addresses]
    return getaddrinfo


def test_every_family_is_tried_once_and_one_not_configured_is_skipped(reactor, monkeypatch):
    # host=None: an address this host cannot bind is a family not configured here: skipped.
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo("192.0.2.1", "127.0.0.1", "127.0.0.1",
                                                                "127.0.0.2"))
    listener = reactor.listen_tcp(Server, None, 0)
    try:
        assert [s.getsockname()[0] for s in listener.sockets] == ["127.0.0.1", "127.0.0.2"]
    finally:
        listener.close()


def test_no_address_to_listen_on_is_a_clear_error(reactor, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo("192.0.2.1"))
    with pytest.raises(OSError) as refused:
        reactor.listen_tcp(Server, None, 0)
    assert refused.value.errno == errno.EADDRNOTAVAIL
    assert str(refused.value) == f"[Errno {errno.EADDRNOTAVAIL}] no address to listen on for host=None"


# -- Unix --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["\0reactor-test-{}", b"\0reactor-test-{}"])
def test_an_abstract_unix_address_needs_no_file(reactor, clients, name):
    path = name.format(id(reactor)) if isinstance(name, str) else name.replace(b"{}", str(id(reactor)).encode())
    listener = reactor.listen_unix(Server, path)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            run_until(reactor, lambda: len(listener.connections) == 1)
    finally:
        listener.close()  # nothing to unlink, nothing to stat
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_listen_unix_takes_the_same_options_as_tcp(reactor, tmp_path):
    setups = []
    path = str(tmp_path / "s.sock")
    listener = reactor.listen_unix(Server, path, max_connections=1, transport_setup=setups.append)
    socks = []
    try:
        for _ in range(2):
            socks.append(socket.socket(socket.AF_UNIX))
            socks[-1].connect(path)
        run_until(reactor, lambda: len(listener.connections) == 1)
        for _ in range(3):
            reactor.run_once(0.01)
        assert len(listener.connections) == 1 and len(setups) == 1  # the second peer waits
        assert setups[0] in listener.connections
    finally:
        for sock in socks:
            sock.close()
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_listening_over_tls_with_its_timeouts(reactor, tmp_path, family):
    tls = pytest.importorskip("tests.test_tls", reason="trustme is in the test extra")
    setups = []
    path = str(tmp_path / "tls.sock")
    options = dict(ssl=tls.server_context(), transport_setup=setups.append,
                   ssl_handshake_timeout=0.2, ssl_shutdown_timeout=0.2)
    client = tls.Client(b"over " + family.encode())
    if family == "unix":
        listener = reactor.listen_unix(tls.Echo, path, **options)
        connector = reactor.connect_unix(lambda: client, path, ssl=tls.client_context(),
                                         server_hostname="localhost")
    else:
        listener = reactor.listen_tcp(tls.Echo, "127.0.0.1", 0, **options)
        connector = reactor.connect_tcp(lambda: client, *listener.address, ssl=tls.client_context(),
                                        server_hostname="localhost")
    try:
        run_until(reactor, lambda: bytes(client.data) == b"over " + family.encode())
        assert type(setups[0]).__name__ == "TLSTransport"  # the application's transport, not the raw one
        connector.result().close()
        run_until(reactor, lambda: client.lost)
        kind = socket.AF_UNIX if family == "unix" else socket.AF_INET
        with socket.socket(kind) as silent:  # never says hello: dropped at the timeout
            silent.connect(path if family == "unix" else listener.address)
            silent.settimeout(10)
            run_until(reactor, lambda: len(listener.connections) == 1)
            run_until(reactor, lambda: not listener.connections, timeout=5)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


# -- defaults, TLS options, link-local addresses ------------------------------------------

def test_a_listener_made_directly_turns_nagle_off_by_default(reactor, clients):
    lsock = Exhausted()  # (a plain listening socket: its script is empty)
    listener = Listener(reactor, [lsock], Server)
    try:
        clients(lsock.getsockname())
        run_until(reactor, lambda: listener.connections)
        (transport,) = listener.connections
        assert transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_ssl_that_is_not_a_context_is_refused_by_name(reactor):
    with pytest.raises(TypeError) as refused:
        reactor.listen_tcp(Server, "127.0.0.1", 0, ssl=True)  # a client's shortcut, meaningless here
    assert str(refused.value) == "ssl must be an ssl.SSLContext (server side), not True"
    assert reactor.stats().readers == 0  # nothing was left listening


def test_listen_tcp_passes_its_shutdown_deadline_on(reactor):
    """A TLS server that closes waits for the peer's close_notify for ssl_shutdown_timeout
    (30 s by default), then cuts it off: here well before the default."""
    tls = pytest.importorskip("tests.test_mutants_tlsstreams", reason="trustme is in the test extra")
    app = tls.App()
    listener = reactor.listen_tcp(lambda: app, "127.0.0.1", 0, ssl=tls.server_context(),
                                  ssl_shutdown_timeout=0.05)
    peer = tls.EnginePeer(listener.address)
    try:
        tls.handshake(reactor, app, peer)
        app.transport.close()  # the peer never answers our close_notify
        run_until(reactor, lambda: app.lost, timeout=5)
        assert app.events[-1] == ("lost", None)
    finally:
        peer.close()
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def _link_local_ipv6():
    """(address, interface index) of a link-local IPv6 address of this host, or None (Linux)."""
    try:
        with open("/proc/net/if_inet6") as table:
            for line in table:
                hexaddr, index, _, scope, _, _ = line.split()
                if scope == "20":  # IPV6_ADDR_LINKLOCAL
                    address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))
                    return address, int(index, 16)
    except OSError:
        pass
    return None


def test_one_port_for_every_family_keeps_an_ipv6_scope(reactor, monkeypatch):
    """With port 0, the families after the first reuse its port: the rest of each
    address (an IPv6 link-local address's flow info and scope id) is kept."""
    link_local = _link_local_ipv6()
    if link_local is None or not socket.has_ipv6:
        pytest.skip("no link-local IPv6 address on this host")
    address, index = link_local

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
                (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, index))]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    listener = reactor.listen_tcp(Server, "dual.example", 0)  # (only bound: nothing connects)
    try:
        v4, v6 = (s.getsockname() for s in listener.sockets)
        assert v6 == (address, v4[1], 0, index)
    finally:
        listener.close()


# -- a connection that fails before it is served ----------------------------------------------

def test_transport_setup_gets_the_stream_transport_of_a_listener_made_directly(reactor, clients):
    setups: list = []
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    lsock = Exhausted()
    listener = Listener(reactor, [lsock], Server, transport_setup=setups.append)  # plaintext by default
    try:
        clients(lsock.getsockname())
        run_until(reactor, lambda: setups or errors)
        assert errors == [] and setups == list(listener.connections)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_a_failing_factory_is_reported_and_only_that_peer_is_closed(reactor, clients):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    problem = LookupError("no protocol for you")
    answers = [problem, None]

    def factory():
        if answers.pop(0) is not None:
            raise problem
        return Server()

    listener = reactor.listen_tcp(factory, "127.0.0.1", 0)
    try:
        (first,) = clients(listener.address)
        run_until(reactor, lambda: errors)
        assert errors == [{"message": "the protocol factory raised; connection closed",
                           "exception": problem, "listener": listener}]
        first.settimeout(10)
        assert closed_by_peer(first)
        clients(listener.address)  # the listener goes on
        run_until(reactor, lambda: len(listener.connections) == 1)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_a_failing_transport_setup_is_reported_with_the_transport_and_ends_it_with_the_error(reactor, clients):
    from reactor.instruments import Instrument

    class Closed(Instrument):
        def __init__(self):
            self.seen: list = []

        def connection_closed(self, transport, exc):
            self.seen.append((transport, exc))

    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    closed = Closed()
    reactor.add_instrument(closed)
    problem = ValueError("no limits for you")
    made: list = []

    def setup(transport):
        made.append(transport)
        raise problem

    listener = reactor.listen_tcp(Server, "127.0.0.1", 0, transport_setup=setup)
    try:
        (peer,) = clients(listener.address)
        run_until(reactor, lambda: errors)
        (transport,) = made
        assert errors == [{"message": "transport_setup() raised; connection closed before it was served",
                           "exception": problem, "listener": listener, "transport": transport}]
        assert closed.seen == [(transport, problem)]  # instruments hear why it ended
        peer.settimeout(10)
        assert closed_by_peer(peer) and listener.connections == set()
    finally:
        listener.close()


def test_a_closed_listener_is_not_kept_alive_by_the_reactor(reactor):
    import gc
    import weakref

    listener = reactor.listen_tcp(Server, "127.0.0.1", 0)
    try:
        ref = weakref.ref(listener)
    except TypeError:  # the mypyc-compiled class has no weak references
        listener.close()
        pytest.skip("compiled build: Listener takes no weak references")
    listener.close()
    del listener
    gc.collect()
    assert ref() is None  # a server that opens and closes listeners does not grow
