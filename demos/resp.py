"""A Redis client on reactor transports: RESP over one connection, pipelined, bounded.

Theory of operation
-------------------
Redis speaks RESP: a command is an array of bulk strings, and the server
answers every command with exactly one reply, in the order the commands
came. So a client may write many commands before reading any reply
(*pipelining*) and match replies to commands with a FIFO queue of
callbacks: ``call(*args, callback=fn)`` packs the command
(``hiredis.pack_command``), writes it to the transport at once and appends
``fn`` to the queue; each reply read pops the oldest callback. Nothing
waits: ``call`` returns before the reply exists, and the reply arrives as
a callback from the loop.

Parsing is done by ``hiredis.Reader``, the C parser redis-py uses. It is
sans-IO: ``feed(bytes)`` whatever the socket gave, then ``gets()`` until it
says there is no complete reply yet. An error reply (``-ERR ...``) comes out
as a ``RedisError`` instance passed to the callback, not raised: it
concerns one command, and the connection carries on.

A connection that has subscribed (``SUBSCRIBE``/``PSUBSCRIBE``; give it an
``on_message``) also gets *pushes*: ``["message", channel, data]`` and ``["pmessage", pattern,
channel, data]`` arrive whenever someone publishes; they go to
``on_message(channel, data)`` and never consume a callback. The
subscription confirmations themselves are replies, one per channel or
pattern, and do.

Nothing here grows without a bound, and nothing blocks:

- **Replies that never come.** One timer per connection watches the oldest
  command still waiting; if Redis has not answered it within ``timeout``
  seconds (a stopped or overloaded server), the connection is aborted with
  ``RedisTimeout``.
- **A server that does not read.** The transport's write buffer is capped
  (``max_buffer``): past it the transport aborts the connection
  (``WriteBufferOverflow``) instead of queueing more.
- **Too many commands in flight.** At ``max_pending`` commands waiting for
  a reply, the connection is aborted (``RedisOverloaded``).

When the connection ends, for whatever reason, every callback still waiting
is called with a ``RedisDown`` error and ``on_lost(exc)`` once. This module
does not reconnect by itself: the owner decides when (``Backoff`` gives the
delays), since what to do again after a reconnection (subscriptions, state
to restore) is the owner's business.

``parse_url`` reads ``redis://[[user]:password@]host[:port][/db]``;
``probe`` checks, with a blocking socket and a short timeout, that a Redis
answers there (for a clear error at start, before the loop runs).
"""

from __future__ import annotations

import random
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlsplit

from reactor import Protocol, WriteBufferOverflow

__all__ = ["RedisAddress", "RedisError", "RedisDown", "RedisTimeout", "RedisOverloaded", "RespConnection",
           "Backoff", "parse_url", "probe", "hiredis_missing"]

DEFAULT_PORT = 6379
Callback = Callable[[Any], None]
_NOTHING = object()  # what Reader.gets() returns when no whole reply is buffered


def hiredis_missing() -> Optional[str]:
    """None if ``hiredis`` can be imported, else what to install."""
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return "the Redis backplane needs the hiredis package: pip install -e '.[chat]' (or pip install hiredis)"
    return None


class RedisError(Exception):
    """An error reply (``-ERR ...``), or the connection's end (subclasses)."""


class RedisDown(RedisError):
    """The connection ended before the reply came."""


class RedisTimeout(RedisDown):
    """Redis did not answer a command within the timeout."""


class RedisOverloaded(RedisDown):
    """Too many commands were waiting for Redis: it is not keeping up."""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: Optional[str] = None
    password: Optional[str] = None

    def __str__(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]`` -> ``RedisAddress``; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"expected a redis://host:port/db URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r} (expected redis://host:port/db)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        raise ValueError(f"the database in {url!r} must be a number (redis://host:port/0)")
    if parts.query or parts.fragment:
        raise ValueError(f"unexpected ?query or #fragment in {url!r}")
    return RedisAddress(parts.hostname, port, int(path or 0), unquote(parts.username) if parts.username else None,
                        unquote(parts.password) if parts.password is not None else None)


def _handshake(address: RedisAddress, name: str = "") -> list[tuple[Any, ...]]:
    """The commands a new connection sends first: AUTH, SELECT, CLIENT SETNAME."""
    commands: list[tuple[Any, ...]] = []
    if address.password is not None:
        commands.append(("AUTH", address.username, address.password) if address.username
                        else ("AUTH", address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    if name:
        commands.append(("CLIENT", "SETNAME", name))
    return commands


def probe(address: RedisAddress, timeout: float = 2.0) -> Optional[str]:
    """None if a Redis answers at *address* (with its password and database), else why not.

    Blocking, with *timeout*: for a server's start, before its loop runs.
    """
    import hiredis

    commands = _handshake(address) + [("PING",)]
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
            sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))
            reader = hiredis.Reader(replyError=RedisError, notEnoughData=_NOTHING)
            replies: list[Any] = []
            while len(replies) < len(commands):
                data = sock.recv(65536)
                if not data:
                    return "it closed the connection (is it a Redis server?)"
                reader.feed(data)
                while (reply := reader.gets()) is not _NOTHING:
                    replies.append(reply)
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    except hiredis.ProtocolError:
        return "it does not speak the Redis protocol"
    for reply in replies:
        if isinstance(reply, RedisError):
            return f"it said: {reply}"
    return None


class Backoff:
    """Delays between reconnection attempts: *first*, doubling, at most *cap*, with +-20% jitter.

    ``reset()`` after a success. Jitter keeps servers that lost Redis at the
    same moment from all knocking at the same instants.
    """

    def __init__(self, first: float = 0.1, cap: float = 5.0, rng: Optional[random.Random] = None) -> None:
        self.first, self.cap = first, cap
        self.current = first
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay * self._rng.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.current = self.first


class RespConnection(Protocol):
    """One connection to Redis. Start it with ``connect(reactor, address)``.

    *on_ready()* once the handshake (AUTH, SELECT, CLIENT SETNAME) is
    answered; *on_lost(exc)* once when it ends (or fails to start), with
    the reason; *on_message(channel, data)* for pub/sub pushes.
    """

    def __init__(self, reactor: Any, address: RedisAddress, *, name: str = "",
                 on_ready: Optional[Callable[[], None]] = None,
                 on_lost: Optional[Callable[[BaseException], None]] = None,
                 on_message: Optional[Callable[[bytes, bytes], None]] = None,
                 timeout: float = 5.0, max_pending: int = 100_000, max_buffer: int = 8 * 1024 * 1024) -> None:
        import hiredis

        self.reactor = reactor
        self.address = address
        self.name = name
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.on_message = on_message
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_buffer = max_buffer
        self.transport: Any = None
        self.ready = False
        self.closed = False
        self.finished = False  # on_lost has been called: nothing more will happen
        self._pack = hiredis.pack_command
        self._reader = hiredis.Reader(replyError=RedisError, notEnoughData=_NOTHING)
        self._pending: deque[tuple[Optional[Callback], float]] = deque()
        self._timer: Any = None
        self._lost_reason: Optional[BaseException] = None
        self._connector: Any = None

    # -- starting and stopping ------------------------------------------------

    def connect(self, connect_timeout: Optional[float] = None) -> None:
        """Start connecting (a literal address connects without a blocking DNS lookup)."""
        timeout = self.timeout if connect_timeout is None else connect_timeout
        self._connector = self.reactor.connect_tcp(lambda: self, self.address.host, self.address.port,
                                                   timeout=timeout)
        self._connector.add_done_callback(self._connected)

    def _connected(self, connector: Any) -> None:
        self._connector = None
        if connector.exception is not None and not self.closed:
            self._lost(connector.exception)

    def close(self) -> None:
        """Close (what is already written is still sent); callbacks waiting get ``RedisDown``."""
        if self.closed:
            return
        self.closed = True
        if self._connector is not None:
            self._connector.cancel()
            self._connector = None
        if self.transport is not None:
            self.transport.close()
        else:
            self._lost(RedisDown("closed"))

    def abort(self, exc: BaseException) -> None:
        """Drop the connection now, for *exc*."""
        self._lost_reason = exc
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        elif self.transport is None:
            self.closed = True
            if self._connector is not None:
                self._connector.cancel()
                self._connector = None
            self._lost(exc)

    # -- commands -------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Commands written and not answered yet."""
        return len(self._pending)

    def call(self, *args: Any, callback: Optional[Callback] = None) -> None:
        """Send one command; *callback(reply)* later (a ``RedisError`` for an error reply).

        Raises ``RedisDown`` if the connection is not open.
        """
        self.call_many([args], [callback])

    def call_many(self, commands: list[tuple[Any, ...]], callbacks: list[Optional[Callback]]) -> None:
        """Several commands in one write (one system call for a batch)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.closed:
            raise RedisDown(f"not connected to {self.address}")
        if len(self._pending) + len(commands) > self.max_pending:
            self.abort(RedisOverloaded(f"{len(self._pending)} commands waiting for a reply: "
                                       f"Redis is not keeping up"))
            raise RedisDown("Redis is not keeping up")
        pack = self._pack
        data = b"".join([pack(c) for c in commands])
        now = self.reactor.time()
        was_idle = not self._pending
        self._pending.extend((cb, now) for cb in callbacks)
        transport.write(data)  # may abort the connection (WriteBufferOverflow): connection_lost follows
        if was_idle and self._timer is None:
            self._arm(now + self.timeout)

    # -- the protocol ---------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.closed:  # closed while the connection was being made
            transport.close()
            return
        transport.set_max_write_buffer_size(self.max_buffer)
        handshake = _handshake(self.address, self.name)
        if not handshake:
            self._ready(None)
            return
        results: list[Any] = []

        def answered(reply: Any) -> None:
            results.append(reply)
            if isinstance(reply, RedisError) and not isinstance(reply, RedisDown):
                self.abort(RedisError(f"{self.address} refused {handshake[len(results) - 1][0]}: {reply}"))
            elif len(results) == len(handshake):
                self._ready(None)

        self.call_many(handshake, [answered] * len(handshake))

    def _ready(self, _: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.ready = True
        if self.on_ready is not None:
            self.on_ready()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # hiredis.ProtocolError: not Redis, or a corrupt stream
                self.abort(RedisError(f"bad reply from {self.address}: {exc}"))
                return
            if reply is _NOTHING:
                break
            if (self.on_message is not None and type(reply) is list and reply
                    and (reply[0] == b"message" or reply[0] == b"pmessage")):
                # A push (only a subscriber connection gets them: elsewhere an
                # array starting with "message" is an ordinary reply).
                if reply[0] == b"message":
                    self.on_message(reply[1], reply[2])
                else:
                    self.on_message(reply[2], reply[3])
                continue
            if not pending:
                self.abort(RedisError(f"a reply from {self.address} that nobody asked for: {reply!r:.80}"))
                return
            callback = pending.popleft()[0]
            if callback is not None:
                callback(reply)
            if self.transport is None or self.transport.is_closing():
                return
        if pending and self._timer is None:
            self._arm(pending[0][1] + self.timeout)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if isinstance(exc, WriteBufferOverflow):
            exc = RedisOverloaded(f"more than {self.max_buffer} bytes waiting to be sent to Redis: "
                                  f"it is not keeping up")
        reason = self._lost_reason or exc or RedisDown(f"{self.address} closed the connection")
        self.closed = True
        self._lost(reason)

    def _lost(self, reason: BaseException) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ready = False
        pending, self._pending = self._pending, deque()
        down = reason if isinstance(reason, RedisDown) else RedisDown(str(reason))
        for callback, _ in pending:
            if callback is not None:
                callback(down)
        on_lost, self.on_lost = self.on_lost, None  # once
        if on_lost is not None:
            on_lost(reason)

    # -- the reply timer ------------------------------------------------------

    def _arm(self, when: float) -> None:
        self._timer = self.reactor.call_later(max(0.0, when - self.reactor.time()), self._check)

    def _check(self) -> None:
        self._timer = None
        if not self._pending or self.transport is None or self.transport.is_closing():
            return
        oldest = self._pending[0][1]
        if self.reactor.time() - oldest >= self.timeout:
            self.abort(RedisTimeout(f"no reply from {self.address} within {self.timeout:g} s"))
        else:
            self._arm(oldest + self.timeout)
