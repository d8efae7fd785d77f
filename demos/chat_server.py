"""A chat server for nc, telnet and demos/chat_client.py.

Run ``python -m demos.chat_server`` (port 7000) and connect a few terminals
with ``nc 127.0.0.1 7000`` or ``telnet 127.0.0.1 7000``. Pick a nickname,
then type; ``/help`` lists the commands.

How it is built, in three layers:

* ``chat_core.Chat``: users, rooms, who hears what. No bytes, no sockets.
* ``TelnetFilter`` and ``clean_line``: input hygiene. Telnet clients send
  option negotiation (IAC sequences) inside the byte stream, terminals
  send escape sequences, and anyone can send invalid UTF-8. All of it is
  removed or replaced before a line reaches other people's terminals,
  where an ANSI escape could rewrite their screen.
* ``ChatConnection``: the wire protocol, one per client, on the reactor's
  ``LineProtocol``: lines in, lines out, plus the protections a public
  server needs: a maximum line length (over-long lines get an error and are
  discarded without buffering more than the limit), a cap on each client's
  output queue (a client that stops reading is disconnected; nobody else
  waits for it), a token bucket against floods, a deadline for choosing a
  nickname, an optional idle timeout, and ``--max-clients``.

SIGINT or SIGTERM: everyone is told, output is flushed (with a deadline),
and the process exits with status 0.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import unicodedata
from typing import Any, Optional

from reactor import FrameTooLong, LineProtocol, Reactor, WriteBufferOverflow
from reactor.monitor import start_monitor

from .chat_core import Chat, ChatError, User
from .cli import why
from .tracing_options import add_trace_options, traced

log = logging.getLogger("demos.chat_server")

DEFAULT_PORT = 7000
MAX_LINE = 1024  # bytes per input line, without the line ending
MAX_OUTPUT = 256 * 1024  # bytes queued for one client before we give up on it
NICK_TIMEOUT = 60.0
FLOOD_RATE = 5.0  # lines per second, sustained
FLOOD_BURST = 10  # lines at once
SHUTDOWN_GRACE = 5.0  # seconds to flush goodbyes before aborting
PRE_NICK_COMMANDS = ("nick", "help", "quit")  # what a client may do before choosing a nickname

BANNER = ("Welcome to the reactor chat server!",
          "Lines are sent to your room; /help lists the commands.")
HELP = """Commands:
  /nick NAME        change your nickname
  /join ROOM        leave your room and join (or create) ROOM
  /part             leave your room
  /rooms            list rooms and how many people are in each
  /who              list the people in your room
  /msg NICK TEXT    send TEXT to NICK only
  /me ACTION        tell your room what you are doing
  /quit [REASON]    leave the chat
  /help             this text"""


# -- input hygiene ---------------------------------------------------------------

IAC, SB, SE = 255, 250, 240
WILL, WONT, DO, DONT = 251, 252, 253, 254
CR, LF, NUL = 13, 10, 0
# Real subnegotiations (terminal type, window size) are a few bytes long; a
# longer one is a stray 0xFF 0xFA in someone's text, not telnet.
MAX_SUBNEGOTIATION = 256


class TelnetFilter:
    """Removes telnet commands (RFC 854) from a byte stream. Sans-IO, resumable.

    ``IAC cmd``, ``IAC WILL/WONT/DO/DONT opt`` and ``IAC SB ... IAC SE``
    are dropped; ``IAC IAC`` is a literal 0xFF byte; ``IAC`` before a byte
    that is no command drops only the ``IAC``. ``CR NUL`` (what telnet sends
    for Enter in character mode) becomes ``CR LF``. A subnegotiation ends at
    ``IAC SE``, or, since a stray ``IAC SB`` must not swallow everything the
    client sends after it, at a newline or after ``MAX_SUBNEGOTIATION`` bytes.
    The state survives between ``feed()`` calls, so a sequence split across
    reads is handled.
    """

    def __init__(self) -> None:
        self._state = "data"
        self._after_cr = False  # the last data byte was CR (for CR NUL)
        self._sb_length = 0

    def feed(self, data: bytes) -> bytes:
        if self._state == "data" and IAC not in data and NUL not in data:
            if data:  # the common case: no telnet at all
                self._after_cr = data[-1] == CR
            return data
        out = bytearray()
        state = self._state
        for byte in data:
            if state == "data":
                if byte == IAC:
                    state = "iac"
                    continue
                if byte == NUL and self._after_cr:
                    byte = LF
                out.append(byte)
                self._after_cr = byte == CR
            elif state == "iac":
                state = "data"
                if byte == IAC:
                    out.append(IAC)
                    self._after_cr = False
                elif byte in (WILL, WONT, DO, DONT):
                    state = "option"
                elif byte == SB:
                    state, self._sb_length = "sb", 0
                elif byte < SE:  # not a command: keep the byte
                    out.append(byte)
                    self._after_cr = byte == CR
            elif state == "option":
                state = "data"
            else:  # "sb" or "sb-iac": inside IAC SB ... IAC SE
                self._sb_length += 1
                if byte == LF or self._sb_length > MAX_SUBNEGOTIATION:
                    state = "data"  # not telnet after all: resynchronise on text
                    out.append(byte)
                    self._after_cr = False
                elif state == "sb":
                    if byte == IAC:
                        state = "sb-iac"
                else:
                    state = "data" if byte == SE else "sb"
        self._state = state
        return bytes(out)


# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")


# Format characters that text needs: the zero-width joiner builds emoji
# sequences and ligatures, the non-joiner is part of Persian spelling.
_KEEP_FORMAT = {"\u200c", "\u200d"}


def clean_line(raw: bytes) -> str:
    """Bytes from the wire -> text that is safe to show on someone's terminal.

    Invalid UTF-8 becomes U+FFFD; escape sequences and every other control
    or invisible formatting character (C0, DEL, C1, bidi overrides) go,
    except the zero-width (non-)joiner; tabs become spaces.
    """
    text = raw.decode("utf-8", errors="replace").replace("\t", " ")
    text = _ANSI.sub("", text)
    return "".join(ch for ch in text if ch in _KEEP_FORMAT
                   or unicodedata.category(ch) not in ("Cc", "Cf")).strip()


class TokenBucket:
    """At most *burst* lines at once, *rate* per second sustained."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# -- the wire protocol ------------------------------------------------------------------

class ChatConnection(LineProtocol):
    """One client. Wire exchange::

        S: Welcome to the reactor chat server! ...
        S: Choose a nickname:
        C: alice
        S: *** alice joined #lobby
        C: hello everyone                 -> others see: <alice> hello everyone
        C: /msg bob psst                  -> bob sees:   [PM from alice] psst
        C: /quit bye
        S: *** goodbye
    """

    def __init__(self, server: "ChatServer") -> None:
        self.server = server
        self.max_line_length = server.max_line
        self.user: Optional[User] = None
        self.peer = "?"
        self.reason = "connection closed by peer"
        self.telnet = TelnetFilter()
        self.bucket: Optional[TokenBucket] = None
        self.flood_warned = False
        self.last_activity = 0.0
        self.timer: Any = None

    # transport events

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        reactor = self.server.reactor
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = f"{host}:{port}"
        if self.server.closing or len(self.server.connections) >= self.server.max_clients:
            log.info("refused %s: %s", self.peer, "shutting down" if self.server.closing else "server full")
            transport.write(b"!!! the server is full, try again later\r\n")
            transport.close()
            return
        self.server.connections.add(self)
        transport.set_max_write_buffer_size(self.server.max_output)
        self.bucket = TokenBucket(self.server.flood_rate, self.server.flood_burst, reactor.time())
        self.last_activity = reactor.time()
        self.timer = reactor.call_later(self.server.nick_timeout, self.check_timeouts)
        log.info("connect %s", self.peer)
        for line in BANNER:
            self.send(line)
        self.prompt()

    def data_received(self, data: bytes) -> None:
        super().data_received(self.telnet.feed(data))

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if isinstance(exc, WriteBufferOverflow):
            self.reason = f"not reading (output queue over {self.server.max_output} bytes)"
        elif exc is not None:
            self.reason = f"error: {exc}"
        if self.timer is not None:
            self.timer.cancel()
        if self in self.server.connections:
            self.server.connections.discard(self)
            if self.user is not None:
                self.server.chat.quit(self.user, self.reason)
            log.info("disconnect %s nick=%s reason=%s", self.peer,
                     self.user.nick if self.user else "-", self.reason)
            self.server.connection_gone()

    # lines

    def send(self, line: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(line.encode("utf-8", errors="replace") + b"\r\n")

    def prompt(self) -> None:
        self.send("Choose a nickname:")

    def line_too_long(self, exc: FrameTooLong) -> None:
        self.send(f"!!! line too long (at most {self.max_line_length} bytes); it was discarded")

    def line_received(self, raw: bytes) -> None:
        reactor = self.server.reactor
        now = reactor.time()
        self.last_activity = now
        if not self.bucket.take(now):
            if not self.flood_warned:
                self.flood_warned = True
                self.send("!!! slow down: you are sending too fast; lines are being dropped")
            return
        self.flood_warned = False
        text = clean_line(raw)
        if not text:
            return
        try:
            if text.startswith("/"):
                command, _, rest = text[1:].partition(" ")
                command = command.lower()
                log.debug("%s %s: /%s", self.peer, self.user.nick if self.user else "-", command)
                handler = getattr(self, f"do_{command}", None) if command.isalpha() else None
                if handler is None:
                    raise ChatError(f"unknown command /{command}; try /help")
                if self.user is None and command not in PRE_NICK_COMMANDS:
                    raise ChatError(f"choose a nickname first (or /{', /'.join(PRE_NICK_COMMANDS)})")
                handler(rest.strip())
            elif self.user is None:
                self.choose_nick(text)
            else:
                self.server.chat.say(self.user, text)
        except ChatError as exc:
            self.send(f"!!! {exc}")
        if self.user is None and not self.transport.is_closing():
            self.prompt()  # still no nickname (a bad one, or /help)

    def choose_nick(self, nick: str) -> None:
        self.user = self.server.chat.register(nick, self.send)
        log.info("%s is %s", self.peer, nick)
        self.timer.cancel()
        self.timer = None
        if self.server.idle_timeout:
            self.timer = self.server.reactor.call_later(self.server.idle_timeout, self.check_timeouts)

    def check_timeouts(self) -> None:
        """Nickname deadline, then idle timeout; rescheduled lazily, not per line."""
        self.timer = None
        reactor = self.server.reactor
        if self.user is None:
            self.disconnect("no nickname chosen in time", f"you did not choose a nickname within "
                            f"{self.server.nick_timeout:g} seconds")
            return
        idle = reactor.time() - self.last_activity
        if idle >= self.server.idle_timeout:
            self.disconnect("idle", f"idle for {self.server.idle_timeout:g} seconds")
        else:
            self.timer = reactor.call_later(self.server.idle_timeout - idle, self.check_timeouts)

    def disconnect(self, reason: str, message: str) -> None:
        self.reason = reason
        self.send(f"*** {message}; goodbye")
        self.transport.close()

    # commands: do_<name>(rest of the line)

    def do_help(self, rest: str) -> None:
        for line in HELP.splitlines():
            self.send(line)

    def do_nick(self, rest: str) -> None:
        if self.user is None:
            self.choose_nick(rest)
        else:
            self.server.chat.rename(self.user, rest)

    def do_join(self, rest: str) -> None:
        self.server.chat.join(self.user, rest)

    def do_part(self, rest: str) -> None:
        self.server.chat.part(self.user)

    def do_rooms(self, rest: str) -> None:
        rooms = self.server.chat.room_list()
        self.send("*** rooms: " + ", ".join(f"#{name} ({count})" for name, count in rooms))

    def do_who(self, rest: str) -> None:
        nicks = self.server.chat.who(self.user)
        self.send(f"*** in #{self.user.room.name}: " + ", ".join(nicks))

    def do_msg(self, rest: str) -> None:
        nick, _, text = rest.partition(" ")
        if not nick or not text.strip():
            raise ChatError("usage: /msg NICK TEXT")
        self.server.chat.private(self.user, nick, text.strip())

    def do_me(self, rest: str) -> None:
        if not rest:
            raise ChatError("usage: /me ACTION")
        self.server.chat.action(self.user, rest)

    def do_quit(self, rest: str) -> None:
        self.reason = f"quit: {rest}" if rest else "quit"
        if self.user is not None:
            self.server.chat.quit(self.user, rest)
        self.send("*** goodbye")
        self.transport.close()


class ChatServer:
    def __init__(self, reactor: Reactor, *, max_clients: int = 1000, max_line: int = MAX_LINE,
                 max_output: int = MAX_OUTPUT, nick_timeout: float = NICK_TIMEOUT,
                 idle_timeout: float = 0.0, flood_rate: float = FLOOD_RATE,
                 flood_burst: int = FLOOD_BURST, shutdown_grace: float = SHUTDOWN_GRACE) -> None:
        self.reactor = reactor
        self.shutdown_grace = shutdown_grace
        self.chat = Chat()
        self.connections: set[ChatConnection] = set()
        self.max_clients = max_clients
        self.max_line = max_line
        self.max_output = max_output
        self.nick_timeout = nick_timeout
        self.idle_timeout = idle_timeout
        self.flood_rate = flood_rate
        self.flood_burst = flood_burst
        self.closing = False
        self.listener: Any = None

    def listen(self, host: Optional[str], port: int) -> Any:
        self.listener = self.reactor.listen_tcp(lambda: ChatConnection(self), host, port)
        return self.listener

    def shutdown(self, grace: Optional[float] = None) -> None:
        """Tell everyone, flush, close; abort stragglers after *grace* seconds; then stop.

        A second call (a second Ctrl-C) aborts the stragglers at once.
        """
        if self.closing:
            if self.connections:
                log.info("shutting down now: aborting %d client(s)", len(self.connections))
                self._abort_stragglers()
            return
        self.closing = True
        log.info("shutting down: %d client(s)", len(self.connections))
        if self.listener is not None:
            self.listener.close()
        self.chat.announce("the server is shutting down; goodbye")
        for conn in list(self.connections):
            if conn.user is None:  # not in the chat yet, but told all the same
                conn.send("*** the server is shutting down; goodbye")
            conn.reason = "server shutdown"
            conn.transport.close()  # flushes the goodbye first
        self.reactor.call_later(self.shutdown_grace if grace is None else grace, self._abort_stragglers)
        self.connection_gone()

    def _abort_stragglers(self) -> None:
        for conn in list(self.connections):
            conn.reason = "server shutdown (output not flushed in time)"
            conn.transport.abort()

    def connection_gone(self) -> None:
        if self.closing and not self.connections:
            self.reactor.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.chat_server",
                                     description="A line-based chat server for nc, telnet and demos.chat_client.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--max-clients", type=int, default=1000, help="default: %(default)s")
    parser.add_argument("--max-line", type=int, default=MAX_LINE, help="bytes per line (default: %(default)s)")
    parser.add_argument("--max-output", type=int, default=MAX_OUTPUT,
                        help="bytes queued per client before disconnecting it (default: %(default)s)")
    parser.add_argument("--nick-timeout", type=float, default=NICK_TIMEOUT,
                        help="seconds to choose a nickname (default: %(default)s)")
    parser.add_argument("--idle-timeout", type=float, default=0.0,
                        help="disconnect clients silent this long; 0 = never (default)")
    parser.add_argument("--flood-rate", type=float, default=FLOOD_RATE,
                        help="lines per second per client, sustained (default: %(default)s)")
    parser.add_argument("--flood-burst", type=int, default=FLOOD_BURST,
                        help="lines a client may send at once (default: %(default)s)")
    parser.add_argument("--shutdown-grace", type=float, default=SHUTDOWN_GRACE,
                        help="seconds to flush goodbyes on SIGINT/SIGTERM before disconnecting "
                             "(a second signal: at once; default: %(default)s)")
    add_trace_options(parser)
    parser.add_argument("--monitor", type=int, metavar="PORT",
                        help="serve the reactor monitor console on 127.0.0.1:PORT (nc to it, type help)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    with Reactor() as reactor, traced(reactor, args):
        server = ChatServer(reactor, max_clients=args.max_clients, max_line=args.max_line,
                            max_output=args.max_output, nick_timeout=args.nick_timeout,
                            idle_timeout=args.idle_timeout, flood_rate=args.flood_rate,
                            flood_burst=args.flood_burst, shutdown_grace=args.shutdown_grace)
        try:
            listener = server.listen(args.host, args.port)
        except OSError as exc:  # the port is taken, or the address is not ours
            print(f"{parser.prog}: cannot listen on {args.host}:{args.port}: {why(exc)} (try another --port)",
                  file=sys.stderr)
            return 2
        for sig in (signal.SIGINT, signal.SIGTERM):
            reactor.add_signal_handler(sig, server.shutdown)
        host, port = listener.address[:2]
        print(f"listening on {host}:{port}", flush=True)
        if args.monitor is not None:
            monitor = start_monitor(reactor, args.monitor)
            print(f"monitor on 127.0.0.1:{monitor.address[1]}", flush=True)
        reactor.run()
    log.info("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
