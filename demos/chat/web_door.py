"""The web door: the chat page over HTTP/1.1 (h11), the chat over a WebSocket (wsproto).

Theory of operation
-------------------
h11 and wsproto are *sans-IO*: bytes in, events out, bytes to send back,
and no socket, thread or clock of their own. A reactor ``Protocol`` is all
the I/O they need: ``data_received`` feeds them, and what they return is
written to the transport. One ``WebDoor`` per connection goes through
two phases:

1. **HTTP.** Bytes go into an ``h11.Connection``; each complete request is
   answered at once, in order (pipelined requests too): the page and its
   two files from ``demos/chat/web/`` (read once at start), 404 for any
   other path, 405 for a method other than GET or HEAD, 400 for a request
   h11 refuses or one with a body. Keep-alive is capped
   (``max_requests`` per connection). Limits: the request head
   (``max_head``: 431, or 414 when the request line alone is too long),
   the target (``max_target``: 414), and time: a request must arrive
   whole within ``request_timeout`` of the connection or of the previous
   answer (408), so a client that trickles bytes (slowloris) or idles on
   a keep-alive connection holds nothing for long.

2. **WebSocket.** A GET of ``/chat`` with valid upgrade headers is answered
   101 and the connection becomes a ``wsproto`` connection (no extensions:
   permessage-deflate would let a small frame inflate without bound). The
   handshake is refused with a clear status when the headers are wrong
   (426 without ``Upgrade: websocket`` or with another version, 400 for a
   bad key) or when ``Origin`` names another site than the ``Host`` the
   browser asked for (403): a page elsewhere cannot open a WebSocket here
   in its visitor's name (cross-site WebSocket hijacking). A client that
   sends no Origin is not a browser and is let in.

   Each text message is one JSON command (``web_messages``); the door
   drives a ``session.Session`` exactly as the line and IRC doors do, so a
   browser, nc and IRC users share the same rooms. Hardening, as for those
   doors: a message over ``max_message`` bytes closes with 1009, a binary
   one with 1003; messages wait their turn under flood control (reading is
   paused, never dropped; at most ``max_queue`` bytes wait); a browser that
   stops reading is dropped once ``max_output`` bytes are queued for it;
   the server sends ping frames after ``ping_interval`` of silence and
   gives up ``ping_timeout`` later (browsers answer pings themselves).

   Closing is the WebSocket closing handshake: a close frame (1000 for
   /quit, 1001 when the server shuts down, 1008 for a timeout), then the
   TCP connection is closed when the browser's close frame comes back, or
   ``close_timeout`` later.

With ``--web-monitor``, ``/reactor`` is the live view of the loop and
``/reactor/ws`` its feed: one ``web_monitor`` sample per second to every
page open, for loopback clients who name a loopback host only (a Host
header that names another machine may be DNS rebinding).

Over TLS (``--web-tls-port``), the same door runs on a TLS transport:
https and wss, and the Origin it expects is ``https://`` + Host.
"""

from __future__ import annotations

import base64
import binascii
import logging
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Optional

import h11
from wsproto.connection import Connection as WebSocket, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import generate_accept_token

from reactor import __version__ as REACTOR_VERSION
from reactor.protocols import Protocol

from . import core
from .core import Event, Error, Goodbye
from .door import door_lost
from .session import Limits, Session
from .web_messages import encode, parse, render
from .web_monitor import Sampler, is_loopback_host

__all__ = ["WebConfig", "WebSite", "WebDoor", "same_origin", "CHAT_PATH", "MONITOR_PATH"]

log = logging.getLogger("demos.chat")

WEB_DIR = Path(__file__).resolve().parent / "web"
CHAT_PATH = "/chat"  # the chat's WebSocket
MONITOR_PATH = "/reactor/ws"  # the monitor's WebSocket
SERVER = f"reactor-chat/{REACTOR_VERSION}"

# path -> (file in WEB_DIR, content type, part of the monitor)
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8", False),
    "/chat.css": ("chat.css", "text/css; charset=utf-8", False),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8", False),
    "/reactor": ("reactor.html", "text/html; charset=utf-8", True),
    "/reactor.css": ("reactor.css", "text/css; charset=utf-8", True),
    "/reactor.js": ("reactor.js", "text/javascript; charset=utf-8", True),
}

# Sent with every answer: nothing from other hosts, no framing by other sites, no sniffing.
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Server", SERVER),
]

# WebSocket close codes (RFC 6455, 7.4.1)
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED, POLICY, TOO_BIG = 1000, 1001, 1002, 1003, 1008, 1009


@dataclass
class WebConfig:
    monitor: bool = False  # serve /reactor (the caller checks that it listens on loopback only)
    request_timeout: float = 10.0  # seconds for a whole request head; also the keep-alive idle time
    max_requests: int = 100  # requests per keep-alive connection; the last is answered "Connection: close"
    max_head: int = 8 * 1024  # bytes of request line and headers
    max_target: int = 2 * 1024  # bytes of the request target
    max_message: int = 16 * 1024  # bytes of one WebSocket message
    ping_interval: float = 30.0  # ping a silent WebSocket after this long; 0: never
    ping_timeout: float = 30.0  # then wait this long for any answer
    close_timeout: float = 5.0  # for the browser's close frame after ours
    pages: dict[str, tuple[bytes, str, bool]] = field(default_factory=dict)  # filled by WebSite


def same_origin(origin: str, host: str, secure: bool) -> bool:
    """Whether a browser's ``Origin`` is this server as the browser named it in ``Host``.

    Scheme, host name and port must all match (the port defaulted by scheme).
    """
    scheme, default = ("https", 443) if secure else ("http", 80)
    try:
        seen = urllib.parse.urlsplit(origin)
        asked = urllib.parse.urlsplit("//" + host)
        seen_port = seen.port or {"http": 80, "https": 443}.get(seen.scheme)
        asked_port = asked.port or default
    except ValueError:  # a port that is not a number, or out of range
        return False
    return (seen.scheme == scheme and bool(seen.hostname) and seen.hostname == asked.hostname
            and seen_port == asked_port and not seen.path.strip("/") and not asked.path)


def _tokens(value: str) -> set[str]:
    """A comma-separated header as lower-case tokens."""
    return {t.strip().lower() for t in value.split(",") if t.strip()}


class WebSite:
    """What the web doors of one chat server share: configuration, pages, the monitor feed."""

    def __init__(self, server: Any, config: Optional[WebConfig] = None) -> None:
        self.server = server
        self.config = config or WebConfig()
        for path, (name, ctype, monitor) in PAGES.items():
            if monitor and not self.config.monitor:
                continue
            self.config.pages[path] = ((WEB_DIR / name).read_bytes(), ctype, monitor)
        self.limits = Limits(**{**server.limits.__dict__, "ping_interval": self.config.ping_interval,
                                "ping_timeout": self.config.ping_timeout})
        self.sampler = Sampler(server.reactor, server.chat) if self.config.monitor else None
        self.viewers: set[WebDoor] = set()
        self._tick: Any = None
        self._latest = ""  # the last sample sent, for a page that opens between two

    def door(self, secure: bool = False) -> "WebDoor":
        """A protocol factory's product: one connection's door."""
        return WebDoor(self, secure)

    # -- the monitor feed: one sample per second, for every page open ----------------------

    def add_viewer(self, door: "WebDoor") -> None:
        assert self.sampler is not None
        if not self.viewers:
            self.sampler.start()
            self._tick = self.server.reactor.call_later(1.0, self._on_tick)
        self.viewers.add(door)
        if self._latest:
            door.send_text(self._latest)  # something to show at once

    def remove_viewer(self, door: "WebDoor") -> None:
        if door in self.viewers:
            self.viewers.discard(door)
            if not self.viewers and self.sampler is not None:
                self.sampler.stop()
                self._latest = ""
                if self._tick is not None:
                    self._tick.cancel()
                    self._tick = None

    def _on_tick(self) -> None:
        assert self.sampler is not None
        self._tick = self.server.reactor.call_later(1.0, self._on_tick)
        text = self._latest = encode(self.sampler.sample())
        for door in list(self.viewers):
            door.send_text(text)


class WebDoor(Protocol):
    """One browser connection: HTTP requests, then (perhaps) a WebSocket. See the module docstring."""

    kind = "web"

    def __init__(self, site: WebSite, secure: bool = False) -> None:
        self.site = site
        self.server = site.server
        self.config = site.config
        self.secure = secure
        self.transport: Any = None
        self.session: Optional[Session] = None
        self.peer = "?"
        self.host = "?"
        self.reason = "connection closed by peer"
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.max_head)
        self.ws: Optional[WebSocket] = None
        self.endpoint = ""  # "chat" or "monitor" once upgraded
        self.requests = 0
        self._request: Optional[h11.Request] = None
        self._request_deadline: Optional[float] = None
        self._message: list[str] = []  # fragments of a message still arriving
        self._message_bytes = 0
        self._held: deque[str] = deque()  # whole messages waiting for flood control
        self._held_bytes = 0
        self._paused = False
        self._close_deadline: Optional[float] = None  # we sent a close frame: the answer is due
        self._heard = 0.0  # monitor keepalive (a chat session keeps its own)
        self._pinged: Optional[float] = None
        self._timer: Any = None
        self._timer_at = 0.0

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        host, port = transport.get_extra_info("peername")[:2]
        self.host, self.peer = host, f"{host}:{port}"
        if server.closing or len(server.doors) >= server.max_clients:
            why = "the server is shutting down" if server.closing else "the server is full, try again later"
            self._raw_answer(503, why)
            return
        server.doors.add(self)
        transport.set_max_write_buffer_size(server.max_output)
        self._request_deadline = server.clock() + self.config.request_timeout
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self.ws is not None:
            self._websocket_data(data)
            return
        self.http.receive_data(data)
        self._http_work()

    def eof_received(self) -> Optional[bool]:
        if self.ws is None and not self.transport.is_closing():
            self.http.receive_data(b"")  # answers for complete requests still go out, then we close
            self._http_work()
        elif self.ws is not None and self._close_deadline is None:
            self.reason = "connection closed by browser (no close frame)"
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.site.remove_viewer(self)
        door_lost(self, exc, self.endpoint)

    def goodbye(self, reason: str, message: str) -> None:
        """The server is shutting down: say so, then close (gracefully: see ``close_websocket``)."""
        self.reason = reason
        if self.transport is None or self.transport.is_closing():
            return
        if self.ws is None:
            self.transport.close()  # after any answer still queued
        elif self.session is not None and self.session.closed is None:
            self._send({"type": "goodbye", "reason": reason, "message": message})
            self.close_websocket(GOING_AWAY, message)
        else:
            self.close_websocket(GOING_AWAY, message)

    # -- HTTP ------------------------------------------------------------------------

    def _http_work(self) -> None:
        """Answer every complete request h11 has, in order."""
        http = self.http
        while self.ws is None and not self.transport.is_closing():
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:  # both sides are done: the next pipelined request
                if http.our_state is h11.DONE and http.their_state is h11.DONE:
                    self._next_cycle()
                    continue
                break
            if isinstance(event, h11.Request):
                self._request = event
                self.requests += 1
                if len(event.target) > self.config.max_target:
                    self._answer(414, f"request target too long (at most {self.config.max_target} bytes)",
                                 close=True)
                    return
                # h11 bounds a head that is still arriving; one that came whole in a read is measured here.
                size = len(event.method) + len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                if size > self.config.max_head:
                    self._answer(431, f"request head too long (at most {self.config.max_head} bytes)", close=True)
                    return
                if self._has_body(event):
                    self._answer(400, "this server takes no request body", close=True)
                    return
            elif isinstance(event, h11.EndOfMessage):
                assert self._request is not None
                self._route(self._request)
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return
        self._arm()

    @staticmethod
    def _has_body(request: h11.Request) -> bool:
        for name, value in request.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
                return True
        return False

    def _next_cycle(self) -> None:
        self.http.start_next_cycle()
        self._request = None
        self._request_deadline = self.server.clock() + self.config.request_timeout

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        """h11 refused the request: say why, in plain HTTP (h11 will not send after an error), and close."""
        status = exc.error_status_hint or 400
        text = f"bad request: {exc}"
        if status == 431:
            if b"\n" not in self.http.trailing_data[0]:
                status, text = 414, f"request line too long (at most {self.config.max_head} bytes)"
            else:
                text = f"request head too long (at most {self.config.max_head} bytes)"
        self.reason = text
        self._raw_answer(status, text)

    def _raw_answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        phrase = HTTPStatus(status).phrase
        head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\nServer: {SERVER}\r\n\r\n")
        log.debug("%s -> %d %s", self.peer, status, text)
        self.transport.write(head.encode() + body)
        self.transport.close()

    def _answer(self, status: int, text: str = "", *, body: Optional[bytes] = None,
                ctype: str = "text/plain; charset=utf-8", headers: tuple[tuple[str, str], ...] = (),
                close: bool = False) -> None:
        """Send a whole response to the current request (no body for HEAD)."""
        request = self._request
        assert request is not None
        if body is None:
            body = (text + "\n").encode()
        all_headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), *SECURITY_HEADERS, *headers]
        if close or self.requests >= self.config.max_requests or self.server.closing:
            all_headers.append(("Connection", "close"))
        http = self.http
        out = http.send(h11.Response(status_code=status, headers=all_headers, reason=HTTPStatus(status).phrase))
        if request.method != b"HEAD":
            out += http.send(h11.Data(data=body))
        out += http.send(h11.EndOfMessage())
        self.transport.write(out)
        log.debug("%s %s %s -> %d", self.peer, request.method.decode(), request.target.decode("ascii", "replace"),
                  status)
        if http.our_state is h11.MUST_CLOSE:
            self.transport.close()
        elif http.our_state is h11.DONE and http.their_state is h11.DONE:
            self._next_cycle()

    def _route(self, request: h11.Request) -> None:
        path = request.target.decode("ascii", "replace").partition("?")[0]
        if path in (CHAT_PATH, MONITOR_PATH):
            self._upgrade(request, path)
            return
        page = self.config.pages.get(path)
        if page is None:
            self._answer(404, f"not found: {path[:100]}; the chat is at /")
            return
        if request.method not in (b"GET", b"HEAD"):
            self._answer(405, "only GET and HEAD here", headers=(("Allow", "GET, HEAD"),))
            return
        body, ctype, monitor = page
        if monitor and not self._monitor_allowed(request):
            self._answer(403, "the reactor monitor answers only to loopback addresses (http://127.0.0.1:PORT/)")
            return
        self._answer(200, body=body, ctype=ctype)

    def _header(self, request: h11.Request, name: bytes) -> str:
        """All values of header *name*, joined by commas (h11 gives names in lower case)."""
        return ", ".join(v.decode("latin-1") for n, v in request.headers if n == name)

    def _monitor_allowed(self, request: h11.Request) -> bool:
        host = urllib.parse.urlsplit("//" + self._header(request, b"host")).hostname or ""
        return is_loopback_host(self.host) and is_loopback_host(host)

    # -- the WebSocket handshake ---------------------------------------------------------

    def _upgrade(self, request: h11.Request, path: str) -> None:
        monitor = path == MONITOR_PATH
        if monitor and not self.config.monitor:
            self._answer(404, f"not found: {path}; start the server with --web-monitor")
            return
        if request.method != b"GET":
            self._answer(405, "a WebSocket opens with GET", headers=(("Allow", "GET"),))
            return
        if "websocket" not in _tokens(self._header(request, b"upgrade")):
            self._answer(426, f"{path} is a WebSocket endpoint: send Upgrade: websocket",
                         headers=(("Upgrade", "websocket"), ("Connection", "Upgrade")))
            return
        if "upgrade" not in _tokens(self._header(request, b"connection")):
            self._answer(400, "a WebSocket upgrade needs Connection: Upgrade")
            return
        if request.http_version != b"1.1":
            self._answer(400, "a WebSocket upgrade needs HTTP/1.1", close=True)
            return
        if self._header(request, b"sec-websocket-version").strip() != "13":
            self._answer(426, "unsupported WebSocket version (this server speaks 13)",
                         headers=(("Sec-WebSocket-Version", "13"),))
            return
        key = self._header(request, b"sec-websocket-key").strip()
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            self._answer(400, "Sec-WebSocket-Key must be 16 bytes in base64")
            return
        origin = self._header(request, b"origin")
        if origin and not same_origin(origin, self._header(request, b"host"), self.secure):
            log.info("refused %s: WebSocket from another site (Origin %s)", self.peer, origin[:100])
            self._answer(403, "this WebSocket is for pages served here (the Origin is another site)")
            return
        if monitor and not self._monitor_allowed(request):
            self._answer(403, "the reactor monitor answers only to loopback addresses")
            return
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()), ("Server", SERVER)]
        out = self.http.send(h11.InformationalResponse(status_code=101, headers=headers,
                                                       reason=b"Switching Protocols"))
        self.transport.write(out)
        rest = self.http.trailing_data[0]  # what the browser sent after the request: WebSocket frames
        self.ws = WebSocket(ConnectionType.SERVER)
        self._request_deadline = None
        now = self.server.clock()
        self._heard = now
        if monitor:
            self.endpoint = "monitor"
            log.info("connect %s (web monitor)", self.peer)
            self.site.add_viewer(self)
        else:
            self.endpoint = "chat"
            log.info("connect %s (web)", self.peer)
            self.session = Session(self.server.chat, self.deliver, now, self.site.limits, host=self.host,
                                   single_room=False, auto_join="")
            self._send({"type": "hello", "server": "reactor chat", "version": REACTOR_VERSION,
                        "default_room": self.server.chat.default_room, "max_message": self.config.max_message,
                        "max_text": self.server.max_line, "max_nick": core.MAX_NICK, "max_room": core.MAX_ROOM})
        if rest:
            self._websocket_data(rest)
        self._arm()

    # -- the WebSocket -----------------------------------------------------------------

    def _websocket_data(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        if ws.state is ConnectionState.CLOSED:
            return
        now = self.server.clock()
        session = self.session
        if session is not None:
            session.heard(now)
        self._heard, self._pinged = now, None
        ws.receive_data(data)
        for event in ws.events():
            if self.transport.is_closing():
                return
            if isinstance(event, TextMessage):
                self._fragment(event)
            elif isinstance(event, BytesMessage):
                self.reason = "sent a binary message"
                self.close_websocket(UNSUPPORTED, "text messages only (JSON)")
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    self.transport.write(ws.send(event.response()))
            elif isinstance(event, Pong):
                pass  # heard, above
            elif isinstance(event, CloseConnection):
                self._close_frame(event)
                return
        if session is not None and self._close_deadline is None:
            session.partial(now, bool(self._message))
            self._pump()
        else:
            self._arm()

    def _fragment(self, event: TextMessage) -> None:
        if self._close_deadline is not None:
            return  # closing: nothing more is taken
        self._message.append(event.data)
        self._message_bytes += len(event.data.encode("utf-8"))
        if self._message_bytes > self.config.max_message:
            self._message.clear()
            self.reason = f"message over {self.config.max_message} bytes"
            self.close_websocket(TOO_BIG, f"message too big (at most {self.config.max_message} bytes)")
            return
        if not event.message_finished:
            return
        text, self._message, self._message_bytes = "".join(self._message), [], 0
        if self.session is None:
            return  # the monitor's page has nothing to say
        self._held.append(text)
        self._held_bytes += len(text)
        if self._held_bytes > self.server.max_queue:
            self.reason = f"input queue over {self.server.max_queue} bytes"
            self._send({"type": "goodbye", "reason": self.reason, "message": "you sent too much at once"})
            self.close_websocket(POLICY, "you sent too much at once")

    def _close_frame(self, event: CloseConnection) -> None:
        """A close frame came (or wsproto found the stream broken): answer it if due, then close."""
        ws = self.ws
        assert ws is not None
        if ws.state is ConnectionState.REMOTE_CLOSING:  # the browser closed first
            self.transport.write(ws.send(event.response()))
            if self._close_deadline is None:
                self.reason = {GOING_AWAY: "left the page", NORMAL: "closed the connection"}.get(
                    event.code, f"closed (code {event.code})")
        elif ws.state is ConnectionState.OPEN:  # not a frame: wsproto's verdict on bad input
            self.reason = f"WebSocket protocol error: {event.reason}"
            self.transport.write(ws.send(CloseConnection(code=event.code, reason=(event.reason or "")[:100])))
        self.transport.close()

    def close_websocket(self, code: int, text: str) -> None:
        """Send a close frame; the connection closes when the browser answers, or after ``close_timeout``."""
        ws = self.ws
        if ws is None or self.transport.is_closing() or self._close_deadline is not None:
            return
        if ws.state is ConnectionState.OPEN:
            reason = text.encode("utf-8")[:120].decode("utf-8", "ignore")  # a close frame holds 123 bytes
            self.transport.write(ws.send(CloseConnection(code=code, reason=reason)))
        self._close_deadline = self.server.clock() + self.config.close_timeout
        self._held.clear()
        if self._paused:  # the browser's close frame must be read
            self._paused = False
            self.transport.resume_reading()
        self._arm()

    # -- output --------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """One text message, if the WebSocket is open."""
        ws = self.ws
        if ws is not None and ws.state is ConnectionState.OPEN and not self.transport.is_closing():
            self.transport.write(ws.send(TextMessage(data=text)))

    def _send(self, message: dict[str, Any]) -> None:
        self.send_text(encode(message))

    def deliver(self, event: Event) -> None:
        """An event from someone else (the session's ``deliver``)."""
        message = render(event)
        if message is not None:
            self.send_text(encode(message))

    def emit(self, events: list[Event]) -> None:
        """This user's own events; a ``Ping`` is a ping frame, a ``Goodbye`` closes after it."""
        ws = self.ws
        for event in events:
            if isinstance(event, core.Ping):
                if ws is not None and ws.state is ConnectionState.OPEN and not self.transport.is_closing():
                    self.transport.write(ws.send(Ping(payload=event.token.encode())))
                continue
            self.deliver(event)
            if isinstance(event, Goodbye):
                self.reason = event.reason
                self.close_websocket(NORMAL if event.reason.startswith("quit") else POLICY,
                                     event.message or "goodbye")

    # -- flood control: the messages waiting their turn ------------------------------------------

    def _pump(self) -> None:
        session, transport = self.session, self.transport
        assert session is not None
        now = self.server.clock()
        while self._held and not transport.is_closing() and session.closed is None and self._close_deadline is None:
            if session.throttle(now) is not None:
                if not self._paused:
                    self._paused = True
                    transport.pause_reading()
                break
            text = self._held.popleft()
            self._held_bytes -= len(text)
            command = parse(text, self.server.max_line)
            if isinstance(command, Error):
                session.note_line(now)
                self.emit([command])
            else:
                self.emit(session.handle(command, now))
        if not self._held and self._paused and not transport.is_closing():
            self._paused = False
            transport.resume_reading()
        self._arm()

    # -- the timer: one per connection, at the earliest deadline -----------------------------------

    def _deadline(self) -> Optional[float]:
        if self.ws is None:
            return self._request_deadline
        if self._close_deadline is not None:
            return self._close_deadline
        if self.session is not None:
            return self.session.deadline
        if self.config.ping_interval:
            return self._heard + self.config.ping_interval if self._pinged is None \
                else self._pinged + self.config.ping_timeout
        return None

    def _arm(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        deadline = self._deadline()
        if deadline is None or (self._timer is not None and self._timer_at <= deadline):
            return  # a timer that fires early finds nothing to do and re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.server.reactor.call_later(max(0.0, deadline - self.server.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        transport = self.transport
        if transport.is_closing():
            return
        now = self.server.clock()
        if self.ws is None:
            if self._request_deadline is not None and now >= self._request_deadline:
                self._request_timeout()
                return
        elif self._close_deadline is not None:
            if now >= self._close_deadline:
                transport.abort()  # no close frame came back: the browser is gone, or not reading
                return
        elif self.session is not None:
            self.emit(self.session.tick(now))
            if not transport.is_closing():
                self._pump()
            return
        elif self.config.ping_interval:
            if self._pinged is None and now >= self._heard + self.config.ping_interval:
                self._pinged = now
                assert self.ws is not None
                transport.write(self.ws.send(Ping(payload=b"keepalive")))
            elif self._pinged is not None and now >= self._pinged + self.config.ping_timeout:
                self.reason = "ping timeout"
                self.close_websocket(POLICY, "ping timeout")
                return
        self._arm()

    def _request_timeout(self) -> None:
        self.reason = "request timeout"
        started = bool(self.http.trailing_data[0]) or self.http.their_state is not h11.IDLE
        if started:  # part of a request came: say why we give up on it
            self._raw_answer(408, f"request not received within {self.config.request_timeout:g} seconds")
        else:  # an idle keep-alive connection: just close
            self.transport.close()
