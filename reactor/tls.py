"""TLS without sockets: the standard library's ``ssl.SSLObject`` between two memory buffers.

Theory of operation
-------------------
``ssl.SSLSocket`` does its own reads and writes, which a reactor cannot
allow. ``ssl.MemoryBIO`` and ``SSLContext.wrap_bio`` give the same TLS
machine with the I/O left out: bytes from the network go into an
*incoming* buffer, bytes for the network come out of an *outgoing* one,
and the ``SSLObject`` turns one into the other. ``TLSEngine`` wraps that
into the shape of every other sans-IO piece here (``framing.py``, h11):

    engine.receive(ciphertext) -> events    (HANDSHAKE_DONE, plaintext bytes, PEER_CLOSED)
    engine.send(plaintext)                  (queued until the handshake is done)
    engine.close()                          (start the close_notify exchange)
    engine.bytes_to_send() -> ciphertext    (drain after every call above)

It owns no socket and no clock: the transport on top (``tlsstreams.py``)
moves the bytes and keeps the timeouts, and a test can wire two engines
back to back and cut their byte streams anywhere.

The facts of ``SSLObject`` this relies on:

* ``do_handshake()``, ``read()`` and ``unwrap()`` raise ``SSLWantReadError``
  when they need more bytes from the peer: not an error, "feed me". With a
  memory BIO, writing never blocks, so ``SSLWantWriteError`` cannot happen;
  whatever an operation wants to send simply accumulates in the outgoing
  buffer (an alert, a handshake flight, a TLS 1.3 KeyUpdate answer or
  NewSessionTicket read by ``read()``), which is why the caller drains
  ``bytes_to_send()`` after *every* call.
* ``write()`` before the handshake is complete raises, so plaintext written
  early waits in ``_pending`` (counted in ``pending_plaintext``) and goes out,
  in order, right after the handshake.
* ``read()`` raising ``SSLZeroReturnError`` means the peer sent close_notify:
  an orderly end. Raw EOF without it (``receive(b"")``) raises ``ssl.SSLEOFError``:
  a truncated stream is an error in TLS, not an EOF.
* Renegotiation: TLS 1.3 has none, and OpenSSL 3 refuses a client's
  TLS 1.2 renegotiation by default (it was CVE-2009-3555 and a CPU
  exhaustion vector). The engine does not change the caller's context; a
  renegotiation that does happen is handled like any other handshake
  message, inside ``read()``.

Errors (a failed verification, garbage instead of a handshake, a bad
record) are raised as the ``ssl.SSLError`` subclass ``ssl`` chose
(``SSLCertVerificationError`` ...). After one, the engine is finished; any
alert it produced is still in ``bytes_to_send()``, worth sending before
closing the socket.
"""

from __future__ import annotations

import enum
import ssl
from collections import deque
from typing import Optional, Union

__all__ = ["TLSEngine", "TLSState", "HANDSHAKE_DONE", "PEER_CLOSED", "TLSEvent", "READ_CHUNK"]

# Plaintext read out of the SSLObject per read() call. A TLS record carries
# at most 16 KiB; one socket read of up to 120 KiB holds several.
READ_CHUNK = 64 * 1024


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


HANDSHAKE_DONE = _Marker("HANDSHAKE_DONE")  # the handshake completed: the peer is verified
PEER_CLOSED = _Marker("PEER_CLOSED")  # the peer sent close_notify: no more data will come
TLSEvent = Union[bytes, _Marker]  # plaintext, or one of the two markers


class TLSState(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"  # we sent close_notify, waiting for the peer's
    CLOSED = "closed"  # both close_notify exchanged (or the engine failed)


class TLSEngine:
    """One TLS connection's state machine, fed and drained by its owner."""

    __slots__ = ("_incoming", "_outgoing", "_obj", "state", "_pending", "pending_plaintext",
                 "_peer_closed")

    def __init__(self, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: Optional[str] = None) -> None:
        if not server_side and context.check_hostname and not server_hostname:
            raise ValueError("server_hostname is needed to verify the server (or turn off "
                             "check_hostname in the context)")
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self.state = TLSState.HANDSHAKING
        self._pending: deque[bytes] = deque()  # plaintext written before the handshake
        self.pending_plaintext = 0
        self._peer_closed = False

    def __repr__(self) -> str:
        return f"<TLSEngine {self.state.value} pending={self.pending_plaintext}B>"

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._obj

    def start(self) -> list[TLSEvent]:
        """Begin the handshake: a client's first flight (ClientHello) is then in bytes_to_send()."""
        return self.receive(None)

    def receive(self, data: Optional[bytes]) -> list[TLSEvent]:
        """Take bytes from the network (``b""``: the peer's EOF); return what they produced.

        Raises ``ssl.SSLError`` if the peer broke the protocol or failed
        verification; the engine is then CLOSED.
        """
        if data:
            self._incoming.write(data)
        elif data is not None:
            self._incoming.write_eof()
        events: list[TLSEvent] = []
        try:
            if self.state is TLSState.HANDSHAKING:
                try:
                    self._obj.do_handshake()
                except ssl.SSLWantReadError:
                    return events
                self.state = TLSState.OPEN
                events.append(HANDSHAKE_DONE)
                self._flush_pending()
            if self.state is TLSState.OPEN or (self.state is TLSState.CLOSING and not self._peer_closed):
                self._read_into(events)
            if self.state is TLSState.CLOSING and self._peer_closed:
                self._unwrap()
        except ssl.SSLError:
            self.state = TLSState.CLOSED
            raise
        return events

    def _read_into(self, events: list[TLSEvent]) -> None:
        chunks = []
        while True:
            try:
                chunk = self._obj.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._peer_closed = True
                break
            if not chunk:  # (a read that returns b"" is an EOF on some versions)
                self._peer_closed = True
                break
            chunks.append(chunk)
        if chunks:
            events.append(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if self._peer_closed:
            events.append(PEER_CLOSED)

    def send(self, data: bytes) -> None:
        """Encrypt *data* now, or queue it until the handshake is done."""
        if self.state is TLSState.HANDSHAKING:
            if data:
                self._pending.append(bytes(data))
                self.pending_plaintext += len(data)
            return
        if self.state is not TLSState.OPEN:
            raise ssl.SSLError("the TLS connection is closing: cannot send")
        self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # write() takes up to 16 KiB records at a time on some versions
            n = self._obj.write(view)
            view = view[n:]

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, deque()
        self.pending_plaintext = 0
        for data in pending:
            self._write(data)

    def close(self) -> None:
        """Start an orderly close: our close_notify goes into bytes_to_send().

        The engine is CLOSED once the peer's close_notify arrives (through
        ``receive``); waiting for it is the owner's choice (and timeout).
        Before the handshake is done there is nothing to close politely.
        """
        if self.state is TLSState.OPEN:
            self.state = TLSState.CLOSING
            self._unwrap()
        elif self.state is TLSState.HANDSHAKING:
            self.state = TLSState.CLOSED
            self._pending.clear()
            self.pending_plaintext = 0

    def _unwrap(self) -> None:
        try:
            self._obj.unwrap()
        except ssl.SSLWantReadError:
            return  # close_notify sent; the peer's not yet received
        except ssl.SSLError:
            self.state = TLSState.CLOSED
            raise
        self.state = TLSState.CLOSED

    @property
    def peer_closed(self) -> bool:
        return self._peer_closed

    def bytes_to_send(self) -> bytes:
        """Ciphertext for the network, produced by the calls since the last drain."""
        return self._outgoing.read() if self._outgoing.pending else b""
