"""The chat's web door: its JSON alone, then HTTP and WebSocket over loopback, in-process.

The server side is the real ``WebSite`` and ``WebDoor`` on a reactor in this
process, driven with ``run_until``; the clients are plain sockets speaking
bytes we write by hand (HTTP edge cases h11 must refuse) or built with
wsproto's client side (a WebSocket peer whose every frame we control: it
can stop answering pings, or reading). Each hardening item of the door has
its test here; real third-party clients (the ``websockets`` library, TLS)
are in test_chat_web_clients.py, a real browser in test_chat_browser.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Callable, Optional

import pytest

from demos.chat.core import Chat, ErrorCode, Joined, Names, Ping, Private, Quit, Said
from demos.chat.session import JoinCmd, Limits, NickCmd, SayCmd, Session
from demos.chat.web_messages import parse, render
from demos.chat.web_monitor import is_loopback_host


def need_module(name: str) -> Any:
    """Import *name*; skip where it is missing (it is in the test extra), fail under CI=true."""
    try:
        return __import__(name)
    except ImportError:
        message = f"{name} is not installed: pip install -e '.[test]' (the web door needs h11 and wsproto)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


# -- the JSON protocol, sans-IO ------------------------------------------------------------------

@pytest.mark.parametrize("raw, command", [
    ('{"type": "nick", "nick": "alice"}', NickCmd("alice")),
    ('{"type": "join", "room": "dev"}', JoinCmd("dev")),
    ('{"type": "say", "room": "dev", "text": "hi \\u001b[31mred"}', SayCmd("hi red", "dev")),
    ('{"type": "say", "room": "dev", "text": "caf\u00e9 \u2713"}', SayCmd("caf\u00e9 \u2713", "dev")),
])
def test_parse_commands(raw, command):
    assert parse(raw, 100) == command


def test_parse_every_type_and_its_fields():
    from demos.chat.session import (EmoteCmd, ListCmd, NamesCmd, PartCmd, PrivateCmd, QuitCmd, TopicCmd,
                                    WhoisCmd)
    cases = {
        '{"type": "part", "room": "dev"}': PartCmd("dev", ""),
        '{"type": "me", "room": "dev", "text": "waves"}': EmoteCmd("waves", "dev"),
        '{"type": "msg", "to": "bob", "text": "psst"}': PrivateCmd("bob", "psst"),
        '{"type": "msg", "to": "bob", "text": "winks", "action": true}': PrivateCmd("bob", "winks", action=True),
        '{"type": "topic", "room": "dev"}': TopicCmd("dev", None),
        '{"type": "topic", "room": "dev", "text": "t"}': TopicCmd("dev", "t"),
        '{"type": "who", "room": "dev"}': NamesCmd("dev"),
        '{"type": "rooms"}': ListCmd(),
        '{"type": "whois", "nick": "bob"}': WhoisCmd("bob"),
        '{"type": "quit", "reason": "bye"}': QuitCmd("bye"),
        '{"type": "quit"}': QuitCmd(""),
    }
    for raw, command in cases.items():
        assert parse(raw, 100) == command, raw


@pytest.mark.parametrize("raw, code, words", [
    ("hello", ErrorCode.UNKNOWN_COMMAND, "not JSON"),
    ("[1, 2]", ErrorCode.UNKNOWN_COMMAND, '"type"'),
    ('{"nick": "x"}', ErrorCode.UNKNOWN_COMMAND, '"type"'),
    ('{"type": "dance"}', ErrorCode.UNKNOWN_COMMAND, "unknown message type 'dance'"),
    ('{"type": "say", "room": "dev", "text": 5}', ErrorCode.NEED_MORE_PARAMS, "'text' must be a string"),
    ('{"type": "say", "text": "hi"}', ErrorCode.NEED_MORE_PARAMS, "'room' must be a string"),
    ('{"type": "say", "room": "dev", "text": "\\u0007 "}', ErrorCode.NO_TEXT, "nothing to send"),
    ('{"type": "say", "room": "dev", "text": "' + "x" * 101 + '"}', ErrorCode.LINE_TOO_LONG, "at most 100 bytes"),
    ('{"type": "msg", "to": "", "text": "x"}', ErrorCode.NO_RECIPIENT, "someone"),
])
def test_parse_refuses_with_a_clear_error(raw, code, words):
    error = parse(raw, 100)
    assert error.code is code and words in error.text


def test_render_events():
    from demos.chat.core import Ident
    alice = Ident("alice", "alice", "127.0.0.1")
    assert render(Said("dev", alice, "hi", 5.0)) == {"type": "said", "room": "dev", "nick": "alice", "text": "hi",
                                                      "at": 5.0}
    assert render(Private(alice, "bob", "psst", 1.0, echo=True)) == {
        "type": "private", "from": "alice", "to": "bob", "text": "psst", "at": 1.0, "echo": True, "action": False}
    assert render(Names("dev", ("a", "b"), on_join=True))["nicks"] == ["a", "b"]
    assert render(Quit(alice, "bye", 2.0)) == {"type": "quit", "nick": "alice", "reason": "bye", "at": 2.0}
    assert render(Ping("keepalive-1")) is None  # a ping frame, not a message


def test_every_event_a_session_produces_renders_as_json():
    """Walk a session through everything a user can do: every event encodes."""
    chat = Chat()
    got: list = []
    bob = Session(chat, got.append, 0.0)
    bob.handle(NickCmd("bob"), 0.0)
    alice = Session(chat, got.append, 0.0, single_room=False)
    for raw in ['{"type":"nick","nick":"alice"}', '{"type":"say","room":"lobby","text":"hi"}',
                '{"type":"me","room":"lobby","text":"waves"}', '{"type":"join","room":"dev"}',
                '{"type":"topic","room":"dev","text":"all about dev"}', '{"type":"who","room":"lobby"}',
                '{"type":"rooms"}', '{"type":"whois","nick":"bob"}', '{"type":"msg","to":"bob","text":"psst"}',
                '{"type":"nick","nick":"alicia"}', '{"type":"part","room":"dev"}', '{"type":"nick","nick":"bob"}',
                '{"type":"quit","reason":"bye"}']:
        got += alice.handle(parse(raw, 1000), 1.0)
    kinds = {json.loads(json.dumps(render(e)))["type"] for e in got if render(e) is not None}
    assert kinds >= {"welcome", "joined", "said", "emote", "topic", "names", "rooms", "whois", "private",
                     "renamed", "left", "error", "goodbye", "quit"}


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("a.localhost", True), ("0.0.0.0", False), ("10.0.0.1", False),
    ("evil.example", False), ("localhost.evil.example", False), ("", False),
])
def test_is_loopback_host(host, loopback):
    assert is_loopback_host(host) is loopback


def test_same_origin():
    need_module("h11")
    from demos.chat.web_door import same_origin
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080", False)
    assert same_origin("http://LOCALHOST:8080", "localhost:8080", False)
    assert same_origin("http://example.org", "example.org:80", False)
    assert same_origin("https://example.org", "example.org", True)
    assert not same_origin("http://127.0.0.1:8081", "127.0.0.1:8080", False)  # another port
    assert not same_origin("https://127.0.0.1:8080", "127.0.0.1:8080", False)  # another scheme
    assert not same_origin("http://127.0.0.1:8080", "127.0.0.1:8080", True)  # page over http, socket over TLS
    assert not same_origin("http://evil.example:8080", "127.0.0.1:8080", False)
    assert not same_origin("null", "127.0.0.1:8080", False)  # sandboxed frames, file:// pages
    assert not same_origin("http://127.0.0.1:99999", "127.0.0.1:8080", False)
    assert not same_origin("http://127.0.0.1:8080/x", "127.0.0.1:8080", False)


# -- over loopback: a server in this process, clients made of sockets ---------------------------

class Site:
    """A chat server with only a web door, on a reactor of its own."""

    def __init__(self, *, max_clients: int = 100, max_output: int = 256 * 1024, max_queue: int = 256 * 1024,
                 limits: Limits = Limits(), **config: Any) -> None:
        need_module("h11")
        need_module("wsproto")
        from demos.chat.server import ChatServer
        from demos.chat.web_door import WebConfig, WebSite
        from reactor import Reactor

        self.reactor = Reactor()
        self.server = ChatServer(self.reactor, max_clients=max_clients, max_output=max_output, max_queue=max_queue,
                                 limits=limits, shutdown_grace=5.0)
        self.site = WebSite(self.server, WebConfig(**config))
        self.listener = self.server.listen_web("127.0.0.1", 0, self.site)
        self.port = self.listener.address[1]
        self.peers: list[Peer] = []

    def run_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        from tests.conftest import run_until
        run_until(self.reactor, condition, timeout)

    def person(self, nick: str) -> "Person":
        return Person(self, nick)

    def close(self) -> None:
        for peer in self.peers:
            peer.sock.close()
        self.reactor.close()


class Person:
    """A chat user without a connection: a session on the same chat, for watching what others do."""

    def __init__(self, site: Site, nick: str) -> None:
        self.site = site
        self.events: list = []
        self.session = Session(site.server.chat, self.events.append, site.server.clock())
        self.do(NickCmd(nick))

    def do(self, command) -> list:
        out = self.session.handle(command, self.site.server.clock())
        self.events += out
        return out


@pytest.fixture
def make_site():
    sites: list[Site] = []

    def make(**kwargs: Any) -> Site:
        sites.append(Site(**kwargs))
        return sites[-1]

    yield make
    for site in sites:
        site.close()


class Peer:
    """A raw client socket, read by stepping the server's reactor."""

    def __init__(self, site: Site, rcvbuf: Optional[int] = None) -> None:
        self.site = site
        self.sock = socket.socket()
        site.peers.append(self)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", site.port))
        self.sock.setblocking(False)
        self.data = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 10
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                assert time.monotonic() < deadline, "the server stopped reading"
                self.site.reactor.run_once(0.01)
            except (ConnectionResetError, BrokenPipeError):
                return  # the server closed: what it said is still to be read

    def pump(self) -> bytes:
        new = bytearray()
        while not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            new += chunk
        self.data += new
        return bytes(new)

    def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        self.site.run_until(lambda: (self.pump(), condition())[1], timeout)

    def until_eof(self, timeout: float = 10.0) -> bytes:
        self.until(lambda: self.eof, timeout)
        return bytes(self.data)


def request(path: str = "/", method: str = "GET", headers: str = "", version: str = "1.1",
            host: str = "127.0.0.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: {host}\r\n{headers}\r\n".encode()


class Incomplete(Exception):
    pass


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse consecutive HTTP responses (none of them to HEAD); ``Incomplete`` if the last is cut short."""
    out = []
    data = bytes(data)
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        if not sep:
            raise Incomplete(head)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(data) < length:
            raise Incomplete(head)
        body, data = data[:length], data[length:]
        out.append((int(status_line.split()[1]), headers, body))
    return out


def complete(data: bytes, count: int = 1) -> bool:
    """Whether *data* holds *count* whole responses."""
    try:
        return len(responses(data)) >= count
    except Incomplete:
        return False


def http(site: Site, raw: bytes, expect: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    peer = Peer(site)
    peer.send(raw)
    peer.until(lambda: complete(peer.data, expect))
    return responses(peer.data)


def test_the_page_and_its_files(make_site):
    site = make_site()
    [(status, headers, body)] = http(site, request("/"))
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"<title>reactor chat</title>" in body and int(headers["content-length"]) == len(body)
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
    assert b"http://" not in body and b"https://" not in body  # nothing from other hosts
    for path, ctype in [("/chat.js", "text/javascript"), ("/chat.css", "text/css"), ("/?from=bookmark", "text/html")]:
        [(status, headers, body)] = http(site, request(path))
        assert status == 200 and headers["content-type"].startswith(ctype) and body
    [(status, _, body)] = http(site, request("/reactor"))
    assert status == 404 and b"--web-monitor" not in body  # off unless asked for


@pytest.mark.parametrize("raw, status, words", [
    (request("/nope"), 404, b"not found: /nope; the chat is at /"),
    (request("/", "POST", "Content-Length: 0\r\n"), 405, b"only GET and HEAD"),
    (request("/", "DELETE"), 405, b"only GET and HEAD"),
    (b"HELLO\r\n\r\n", 400, b"bad request"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, b"Host"),  # HTTP/1.1 without Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"bad request"),
    (request("/", headers="Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"), 400, b"no request body"),
    (request("/", "POST", "Content-Length: 5\r\n") + b"hello", 400, b"no request body"),
])
def test_status_codes(make_site, raw, status, words):
    site = make_site()
    [(got, headers, body)] = http(site, raw)
    assert got == status and words in body, body
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


def test_head_has_the_headers_of_get_and_no_body(make_site):
    site = make_site()
    peer = Peer(site)
    peer.send(request("/", "HEAD") + request("/chat.css"))  # the body of GET follows HEAD's headers at once
    def after_the_first_head() -> bytes:
        return bytes(peer.data).partition(b"\r\n\r\n")[2]

    peer.until(lambda: complete(after_the_first_head()))
    first, _, rest = bytes(peer.data).partition(b"\r\n\r\n")
    assert b"Content-Length: 1" in first and rest.startswith(b"HTTP/1.1 200 OK")  # no body in between
    [(status, headers, body)] = responses(rest)
    assert headers["content-type"].startswith("text/css") and len(body) == int(headers["content-length"])


def test_pipelined_requests_are_answered_in_order_on_one_connection(make_site):
    site = make_site()
    peer = Peer(site)
    peer.send(request("/chat.css") + request("/nope") + request("/chat.js") + request("/"))
    peer.until(lambda: complete(peer.data, 4))
    got = responses(peer.data)
    assert [s for s, _, _ in got] == [200, 404, 200, 200]
    assert [h.get("content-type", "").split(";")[0] for _, h, _ in got] == [
        "text/css", "text/plain", "text/javascript", "text/html"]
    assert not peer.eof  # kept alive


def test_a_body_on_get_is_refused_and_what_follows_it_is_not_read_as_a_request(make_site):
    """No request smuggling: the "body" holds a request of its own, which must never be answered."""
    site = make_site()
    smuggled = request("/chat.js")
    peer = Peer(site)
    peer.send(request("/", headers=f"Content-Length: {len(smuggled)}\r\n") + smuggled + request("/chat.css"))
    data = peer.until_eof()
    [(status, headers, body)] = responses(data)
    assert status == 400 and body == b"this server takes no request body\n" and headers["connection"] == "close"


@pytest.mark.parametrize("raw, status, words", [
    (b"GET /" + b"a" * 10000, 414, b"request line too long (at most 8192 bytes)"),  # and no end in sight
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"request target too long"),
    (request("/", headers="X-Big: " + "b" * 9000 + "\r\n"), 431, b"request head too long (at most 8192 bytes)"),
    (request("/" + "a" * 3000), 414, b"request target too long (at most 2048 bytes)"),
])
def test_size_limits(make_site, raw, status, words):
    site = make_site()
    peer = Peer(site)
    peer.send(raw)
    [(got, _, body)] = responses(peer.until_eof())
    assert got == status and words in body


def test_the_head_limit_holds_however_the_bytes_arrive(make_site):
    """An endless header, a few bytes at a time: refused once past the limit, not buffered forever."""
    site = make_site(max_head=4096)
    peer = Peer(site)
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
    sent = 0
    while not peer.eof and sent < 20000:
        peer.send(b"y" * 500)
        sent += 500
        peer.pump()
        site.reactor.run_once(0)
    peer.until_eof()
    assert sent <= 4096 + 2 * 65536 and responses(peer.data)[0][0] == 431


def test_a_slow_request_times_out_with_408(make_site):
    """Slowloris: a request that never ends holds the connection only request_timeout seconds."""
    site = make_site(request_timeout=0.3)
    peer = Peer(site)
    started = time.monotonic()
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):  # trickling bytes does not extend the deadline
        peer.send(b"X-A: b\r\n")
        site.reactor.run_once(0.05)
    data = peer.until_eof()
    assert time.monotonic() - started >= 0.3
    [(status, _, body)] = responses(data)
    assert status == 408 and body == b"request not received within 0.3 seconds\n"


def test_an_idle_keep_alive_connection_is_closed_quietly(make_site):
    site = make_site(request_timeout=0.3)
    peer = Peer(site)
    peer.send(request("/chat.css"))
    peer.until(lambda: complete(peer.data))
    answered = len(peer.data)
    started = time.monotonic()
    assert len(peer.until_eof()) == answered  # nothing more: no 408 for an idle connection
    assert time.monotonic() - started >= 0.25


def test_keep_alive_is_capped(make_site):
    site = make_site(max_requests=3)
    peer = Peer(site)
    peer.send(request("/chat.css") * 5)
    got = responses(peer.until_eof())
    assert [s for s, _, _ in got] == [200, 200, 200]  # the rest were never read
    assert [h.get("connection") for _, h, _ in got] == [None, None, "close"]


def test_a_full_server_answers_503(make_site):
    site = make_site(max_clients=1)
    first = Peer(site)
    first.send(request("/chat.css"))
    first.until(lambda: complete(first.data))
    [(status, _, body)] = responses(Peer(site).until_eof())
    assert status == 503 and b"full" in body


# -- the WebSocket handshake --------------------------------------------------------------------

def upgrade(path: str = "/chat", *, key: str = "dGhlIHNhbXBsZSBub25jZQ==", version: str = "13",
            upgrade_to: Optional[str] = "websocket", connection: Optional[str] = "Upgrade",
            origin: Optional[str] = None, host: str = "127.0.0.1:PORT", method: str = "GET",
            http_version: str = "1.1") -> str:
    lines = [f"{method} {path} HTTP/{http_version}", f"Host: {host}", f"Sec-WebSocket-Key: {key}",
             f"Sec-WebSocket-Version: {version}"]
    if upgrade_to is not None:
        lines.append(f"Upgrade: {upgrade_to}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.mark.parametrize("raw, status, words", [
    (upgrade(), 101, ""),
    (upgrade(connection="keep-alive, Upgrade", upgrade_to="WebSocket"), 101, ""),  # tokens, any case
    (upgrade(origin="http://127.0.0.1:PORT"), 101, ""),  # the page's own origin
    (upgrade(upgrade_to=None, connection=None), 426, "/chat is a WebSocket endpoint"),
    (upgrade(upgrade_to="h2c"), 426, "send Upgrade: websocket"),
    (upgrade(connection="keep-alive"), 400, "Connection: Upgrade"),
    (upgrade(version="8"), 426, "this server speaks 13"),
    (upgrade(key="not base64!"), 400, "16 bytes in base64"),
    (upgrade(key="c2hvcnQ="), 400, "16 bytes in base64"),
    (upgrade(method="POST"), 405, "opens with GET"),
    (upgrade(http_version="1.0"), 400, "HTTP/1.1"),
    (upgrade(origin="http://evil.example"), 403, "the Origin is another site"),
    (upgrade(origin="http://127.0.0.1:1"), 403, "the Origin is another site"),
    (upgrade(origin="https://127.0.0.1:PORT"), 403, "the Origin is another site"),
    (upgrade(origin="null"), 403, "the Origin is another site"),
    (upgrade(origin="http://evil.example", host="evil.example"), 101, ""),  # consistent: not cross-site
    (upgrade("/reactor/ws"), 404, "start the server with --web-monitor"),
    (upgrade("/"), 200, "<title>reactor chat</title>"),  # an upgrade a page does not offer: ignored
    (upgrade("/elsewhere"), 404, "not found"),
])
def test_websocket_handshake(make_site, raw, status, words):
    site = make_site()
    peer = Peer(site)
    peer.send(raw.replace("PORT", str(site.port)).encode())
    peer.until(lambda: b"\r\n\r\n" in peer.data and (status == 101 or complete(peer.data)))
    head, _, body = bytes(peer.data).partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    if status == 101:
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's example key
        peer.until(lambda: b'"type":"hello"' in peer.data)
    else:
        assert words.encode() in body, body
    if status == 426 and "version" in raw:
        assert b"Sec-WebSocket-Version: 13" in head


class WsPeer(Peer):
    """A WebSocket client on wsproto: JSON messages in ``messages``, every frame under our control."""

    def __init__(self, site: Site, path: str = "/chat", *, rcvbuf: Optional[int] = None, answer_pings: bool = True,
                 answer_close: bool = True, headers: Optional[list[tuple[str, str]]] = None, host: Optional[str] = None) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import Request

        super().__init__(site, rcvbuf)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.answer_pings = answer_pings
        self.answer_close = answer_close
        self.pings = 0
        self.messages: list[dict] = []
        self.texts: list[str] = []
        self.accepted = False
        self.rejected: Any = None
        self.closed: Any = None  # the CloseConnection event
        self._text = ""
        self.send(self.ws.send(Request(host=host or f"127.0.0.1:{site.port}", target=path,
                                       extra_headers=headers or [])))

    def pump(self) -> bytes:
        from wsproto.events import (AcceptConnection, CloseConnection, Ping, RejectConnection, RejectData,
                                    TextMessage)

        new = super().pump()
        if self.closed is not None and self.ws.state.name == "CLOSED":
            return new
        if new:
            self.ws.receive_data(new)
        if self.eof and self.ws.state.name not in ("CLOSED",):
            self.ws.receive_data(None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, (RejectConnection, RejectData)):
                self.rejected = event
            elif isinstance(event, Ping):
                self.pings += 1
                if self.answer_pings:
                    self.send(self.ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.texts.append(self._text)
                    self.messages.append(json.loads(self._text))
                    self._text = ""
            elif isinstance(event, CloseConnection):
                self.closed = self.closed or event  # the close frame, not wsproto's 1006 at the end of the stream
                if self.ws.state.name == "REMOTE_CLOSING" and not self.eof and self.answer_close:
                    self.send(self.ws.send(event.response()))
        return new

    def send_json(self, message: Any) -> None:
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        from wsproto.events import TextMessage
        self.send(self.ws.send(TextMessage(data=text)))

    def wait_for(self, type_: str, timeout: float = 10.0, **fields: Any) -> dict:
        """The first message of *type_* with these *fields* (not yet taken), after stepping the loop."""
        found: list[dict] = []

        def find() -> bool:
            for i, m in enumerate(self.messages):
                if m.get("type") == type_ and all(m.get(k) == v for k, v in fields.items()):
                    del self.messages[: i + 1]
                    found.append(m)
                    return True
            return False

        self.until(find, timeout)
        return found[0]

    def login(self, nick: str) -> "WsPeer":
        self.wait_for("hello")
        self.send_json({"type": "nick", "nick": nick})
        self.wait_for("welcome", nick=nick)
        self.wait_for("names", room="lobby")
        return self

    def wait_closed(self, timeout: float = 10.0) -> Any:
        self.until(lambda: self.closed is not None and self.eof, timeout)
        return self.closed


def test_a_websocket_user_chats_with_others_in_the_same_rooms(make_site):
    site = make_site()
    bob = site.person("bob")
    web = WsPeer(site).login("alice")
    assert any(isinstance(e, Joined) and e.who.nick == "alice" for e in bob.events)
    web.send_json({"type": "say", "room": "lobby", "text": "hello bob"})
    site.run_until(lambda: any(isinstance(e, Said) and e.text == "hello bob" for e in bob.events))
    bob.do(SayCmd("hello alice"))
    assert web.wait_for("said", nick="bob")["text"] == "hello alice"
    web.send_json({"type": "msg", "to": "bob", "text": "psst"})
    assert web.wait_for("private", echo=True)["to"] == "bob"
    site.run_until(lambda: any(isinstance(e, Private) and e.text == "psst" for e in bob.events))
    web.send_json({"type": "join", "room": "lobby"})
    assert web.wait_for("error")["code"] == "already in room"
    web.send_json({"type": "quit", "reason": "see you"})
    assert web.wait_for("goodbye")["reason"] == "quit: see you"
    closed = web.wait_closed()
    assert closed.code == 1000
    assert any(isinstance(e, Quit) and e.reason == "see you" for e in bob.events)
    site.run_until(lambda: not site.server.doors)


def test_a_message_over_the_limit_is_refused_with_1009(make_site):
    site = make_site(max_message=1000)
    bob = site.person("bob")
    web = WsPeer(site).login("alice")
    web.send_text(json.dumps({"type": "say", "room": "lobby", "text": "x" * 990}))  # 1000+ bytes as JSON
    closed = web.wait_closed()
    assert (closed.code, closed.reason) == (1009, "message too big (at most 1000 bytes)")
    assert not any(isinstance(e, Said) for e in bob.events)
    assert [e.reason for e in bob.events if isinstance(e, Quit)] == ["message over 1000 bytes"]


def test_a_message_in_many_fragments_is_capped_as_it_arrives(make_site):
    from wsproto.events import TextMessage
    site = make_site(max_message=1000)
    web = WsPeer(site).login("alice")
    for _ in range(50):  # 50 fragments of 100 bytes, never finished: refused at the 11th
        web.send(web.ws.send(TextMessage(data="y" * 100, message_finished=False)))
        web.pump()
        if web.closed is not None:
            break
    assert web.wait_closed().code == 1009


def test_binary_messages_are_refused_with_1003(make_site):
    from wsproto.events import BytesMessage
    site = make_site()
    web = WsPeer(site).login("alice")
    web.send(web.ws.send(BytesMessage(data=b"\x00\x01")))
    assert web.wait_closed().code == 1003


def test_a_frame_that_breaks_the_protocol_is_answered_with_1002(make_site):
    site = make_site()
    web = WsPeer(site).login("alice")
    web.send(b"\x81\x05hello")  # unmasked: a client must mask every frame (RFC 6455, 5.1)
    assert web.wait_closed().code == 1002


def test_keepalive_pings_and_a_browser_that_never_answers_is_dropped(make_site):
    site = make_site(ping_interval=0.2, ping_timeout=0.3)
    bob = site.person("bob")
    alive = WsPeer(site).login("alive")
    silent = WsPeer(site, answer_pings=False).login("silent")
    both = lambda condition: site.run_until(lambda: (alive.pump(), silent.pump(), condition())[-1])  # noqa: E731
    both(lambda: silent.pings >= 1)
    started = time.monotonic()
    both(lambda: silent.closed is not None and silent.eof)
    assert silent.closed.code == 1008 and time.monotonic() - started >= 0.25
    both(lambda: alive.pings >= 3)  # answered, so still here
    assert alive.closed is None and not alive.eof
    assert [e.reason for e in bob.events if isinstance(e, Quit)] == ["Ping timeout: 0.5 seconds"]


def test_a_browser_that_stops_reading_is_dropped_and_nobody_waits_for_it(make_site):
    site = make_site(max_output=64 * 1024, limits=Limits(flood_rate=1e6, flood_burst=10 ** 6))
    bob = site.person("bob")
    watcher = WsPeer(site).login("watcher")
    lazy = WsPeer(site, rcvbuf=4096).login("lazy")
    for transport in site.reactor.connections():  # the server's side of lazy's connection: a small buffer too
        if transport.get_extra_info("peername") == lazy.sock.getsockname():
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    line = "z" * 1000
    for n in range(2000):  # up to 2 MB for lazy, who reads none of it
        bob.do(SayCmd(f"{n} {line}"))
        if n % 50 == 0:
            site.reactor.run_once(0)
            watcher.pump()
            watcher.messages.clear()  # watcher keeps up
        if not any(d.session and d.session.nick == "lazy" for d in site.server.doors):
            break
    site.run_until(lambda: any(isinstance(e, Quit) and e.who.nick == "lazy" for e in bob.events))
    reason = [e.reason for e in bob.events if isinstance(e, Quit)][0]
    assert reason == "not reading (output queue over 65536 bytes)"
    bob.do(SayCmd("after lazy left"))
    assert watcher.wait_for("said", text="after lazy left")


def test_flood_control_delays_messages_and_loses_none(make_site):
    site = make_site(limits=Limits(flood_rate=200.0, flood_burst=5))
    bob = site.person("bob")
    web = WsPeer(site).login("alice")
    from wsproto.events import TextMessage
    web.send(b"".join(web.ws.send(TextMessage(data=json.dumps({"type": "say", "room": "lobby", "text": f"line {n}"})))
                      for n in range(40)))
    site.run_until(lambda: sum(isinstance(e, Said) for e in bob.events) == 40)
    assert [e.text for e in bob.events if isinstance(e, Said)] == [f"line {n}" for n in range(40)]
    assert web.wait_for("notice")["text"].startswith("slow down")


def test_too_much_input_at_once_is_refused(make_site):
    site = make_site(max_queue=4096, limits=Limits(flood_rate=1.0, flood_burst=1))
    web = WsPeer(site).login("alice")
    from wsproto.events import TextMessage
    burst = b"".join(web.ws.send(TextMessage(data=json.dumps({"type": "say", "room": "lobby", "text": "w" * 500})))
                     for _ in range(20))
    web.send(burst)
    assert web.wait_for("goodbye")["message"] == "you sent too much at once"
    assert web.wait_closed().code == 1008


def test_shutdown_sends_going_away_and_waits_for_the_close_frame(make_site):
    site = make_site()
    bob = site.person("bob")
    web = WsPeer(site).login("alice")
    page = Peer(site)
    page.send(request("/chat.css"))
    page.until(lambda: complete(page.data))
    site.server.shutdown()
    assert web.wait_for("goodbye")["message"] == "the server is shutting down"
    closed = web.wait_closed()
    assert (closed.code, closed.reason) == (1001, "the server is shutting down")
    page.until_eof()  # the idle keep-alive connection is closed too
    site.run_until(lambda: not site.server.doors)
    assert [e.reason for e in bob.events if isinstance(e, Quit)] == ["server shutdown"]


def test_a_browser_that_never_answers_our_close_frame_is_cut_off(make_site):
    site = make_site(close_timeout=0.3)
    web = WsPeer(site, answer_close=False).login("alice")
    web.send_json({"type": "quit"})
    web.until(lambda: web.closed is not None)
    started = time.monotonic()
    web.until(lambda: web.eof)
    assert web.closed.code == 1000 and time.monotonic() - started >= 0.2
    site.run_until(lambda: not site.server.doors)


# -- the monitor ------------------------------------------------------------------------------

def test_the_monitor_shows_the_loop_live(make_site):
    site = make_site(monitor=True)
    [(status, headers, body)] = http(site, request("/reactor"))
    assert status == 200 and b"<canvas" in body
    bob = site.person("bob")
    chat = WsPeer(site).login("alice")
    viewer = WsPeer(site, "/reactor/ws")
    sample = viewer.wait_for("sample", timeout=5)
    assert sample["loop"]["iterations"] > 0 and sample["interval"] >= 0.9
    assert 0 <= sample["loop"]["select_share"] <= 1
    rows = {row["who"]: row for row in sample["connections"]}
    assert rows["alice"]["kind"] == "web" and rows["alice"]["in"] > 0 and rows["alice"]["out"] > 0
    assert any(row["kind"] == "web monitor" for row in sample["connections"])
    assert sample["chat"]["users"] == 2 and sample["timers"]["pending"] >= 1
    assert any("_on_tick" in t["what"] for t in sample["timers"]["soonest"])
    assert bob and chat
    from wsproto.events import CloseConnection
    viewer.send(viewer.ws.send(CloseConnection(code=1000)))
    viewer.until(lambda: viewer.eof)
    site.run_until(lambda: not site.site.viewers)
    assert site.site._tick is None  # the sampler's tick is gone with its last viewer
    assert site.reactor.stats().timers_pending == 2  # alice's keepalive, the page's keep-alive connection


def test_a_monitor_page_that_never_answers_pings_is_closed(make_site):
    site = make_site(monitor=True, ping_interval=0.2, ping_timeout=0.2)
    viewer = WsPeer(site, "/reactor/ws", answer_pings=False)
    closed = viewer.wait_closed()
    assert viewer.pings == 1 and (closed.code, closed.reason) == (1008, "ping timeout")


@pytest.mark.parametrize("host", ["evil.example:PORT", "192.168.1.1:PORT"])
def test_the_monitor_refuses_a_host_that_is_not_loopback(make_site, host):
    """A page on another site that rebinds its name to 127.0.0.1 still sends its own Host."""
    site = make_site(monitor=True)
    [(status, _, body)] = http(site, request("/reactor", host=host.replace("PORT", str(site.port))))
    assert status == 403 and b"loopback" in body
    peer = Peer(site)
    peer.send(upgrade("/reactor/ws", host=host.replace("PORT", str(site.port))).encode())
    peer.until(lambda: complete(peer.data))
    [(status, _, body)] = responses(peer.data)
    assert status == 403
