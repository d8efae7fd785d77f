"""TLS over a stream transport: servers, clients and STARTTLS, on the sans-IO ``TLSEngine``.

Theory of operation
-------------------
asyncio's ``sslproto.py`` is the model: TLS is a *protocol* on an ordinary
``StreamTransport``, and it offers the application a *transport* of its
own. Two small objects per connection::

    socket <-> StreamTransport <-> TLSProtocol <-> TLSTransport <-> your protocol
              (ciphertext)          (TLSEngine)     (plaintext)

* ``TLSProtocol`` is what the stream transport calls: ``data_received``
  with ciphertext, which it feeds to the engine; the plaintext that comes
  out goes to the application's ``data_received``; whatever the engine
  wants to send (handshake flights, alerts, encrypted data, close_notify)
  is written to the stream transport at once.
* ``TLSTransport`` is what the application calls: ``write`` encrypts,
  ``close`` starts the close_notify exchange; everything else (flow
  control, extra info, pausing) maps onto the stream transport below.

Nothing of the stream transport changes for TLS: its buffers, flow
control, hard cap and lifecycle are the plain ones, and STARTTLS
(``start_tls``) is nothing but ``set_protocol`` on a live transport.

The application's callbacks, in the order of ``protocols.py``:
``connection_made`` when the TCP connection is made (writes are queued,
encrypted and sent once the handshake completes), ``data_received`` only
after the handshake (the peer is verified: nothing is delivered before),
``eof_received`` when the peer sends close_notify (TLS has no half-close:
the connection then closes), ``connection_lost(exc)`` once, with the
``ssl.SSLError`` if the handshake or a record failed (a failed certificate
check is ``SSLCertVerificationError``), ``TimeoutError`` if the handshake
took longer than ``ssl_handshake_timeout``.

Flow control is measured in both kinds of bytes: ``get_write_buffer_size()``
is the plaintext still waiting for the handshake plus the ciphertext the
stream transport holds, and ``pause_writing`` follows it, so an application
that pauses its reading on ``pause_writing`` (as it should on any
transport) stops reading a peer that does not read. TLS itself also
answers what it reads (TLS 1.3 KeyUpdate requests, alerts): when reading
made TLS produce output while the output is over the high-water mark, the
layer stops reading until it drains, so a peer that never reads cannot
make us produce such answers without bound. (It does not stop reading for
the application's own writes: two peers that each wrote more than the
mark, then waited to read, would deadlock.)

Closing: ``close()`` sends close_notify, then waits up to
``ssl_shutdown_timeout`` for the peer's before closing the socket (no
data is delivered meanwhile); ``abort()`` closes at once. ``write_eof()``
raises: TLS 1.2 and 1.3 as ``ssl`` implements them have no half-close.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Callable, Iterable, Optional, Union

from .buffers import BytesLike
from .protocols import BufferedProtocol, Protocol
from .registry import TransportHost
from .streams import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, StreamTransport
from .tls import HANDSHAKE_DONE, PEER_CLOSED, TLSEngine, TLSState
from .transports import DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, water_marks

__all__ = ["TLSProtocol", "TLSTransport", "start_tls", "client_context", "SSLArgument",
           "DEFAULT_HANDSHAKE_TIMEOUT", "DEFAULT_SHUTDOWN_TIMEOUT"]

logger = logging.getLogger("reactor")


AppProtocol = Union[Protocol, BufferedProtocol]
SSLArgument = Union[ssl.SSLContext, bool, None]


def client_context(ssl_arg: SSLArgument) -> Optional[ssl.SSLContext]:
    """``ssl=True`` means ``ssl.create_default_context()``: certificates and hostnames verified."""
    if ssl_arg is None or ssl_arg is False:
        return None
    if ssl_arg is True:
        return ssl.create_default_context()
    if not isinstance(ssl_arg, ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext, True or None, not {ssl_arg!r}")
    return ssl_arg


def check_timeouts(handshake: float, shutdown: float) -> None:
    if not handshake > 0 or not shutdown > 0:
        raise ValueError(f"TLS timeouts must be positive, got ssl_handshake_timeout={handshake!r}, "
                         f"ssl_shutdown_timeout={shutdown!r}")


class TLSProtocol(Protocol):
    """The stream transport's protocol while it carries TLS (see the module docstring)."""

    carries = "tls"  # for tracers and the traffic log: the bytes below us are TLS records

    def __init__(self, reactor: TransportHost, app_protocol: AppProtocol, context: ssl.SSLContext, *,
                 server_side: bool, server_hostname: Optional[str] = None,
                 ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 on_handshake: Optional[Callable[[Optional[BaseException]], None]] = None) -> None:
        check_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout)
        self._reactor = reactor
        self.app_protocol = app_protocol
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self._handshake_timeout = ssl_handshake_timeout
        self._shutdown_timeout = ssl_shutdown_timeout
        self._on_handshake = on_handshake
        # Made now, so that the engine's checks (server_hostname) fail at
        # listen/connect time rather than inside a callback.
        self.engine = TLSEngine(context, server_side=server_side, server_hostname=server_hostname)
        self.app_transport = TLSTransport(self)
        self.raw: Optional[StreamTransport] = None
        self._timer: Any = None  # the handshake, then the shutdown deadline
        self._failure: Optional[BaseException] = None  # what connection_lost will say
        self._app_made = False
        self._app_lost = False
        self._closing = False  # the application closed (or the peer sent close_notify)
        self._app_reading_paused = False  # the application's pause_reading()
        self._output_paused = False  # the stream transport's buffer is over high water
        self._tls_paused = False  # we stopped reading: reading made TLS answer, while over high water
        self._app_writing_paused = False
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_LOW_WATER

    def __repr__(self) -> str:
        return f"<TLSProtocol {self.engine.state.value} app={type(self.app_protocol).__name__}>"

    # -- the stream transport's callbacks -----------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.attach(transport, b"", app_made_now=True)

    def attach(self, raw: StreamTransport, initial_data: bytes, *, app_made_now: bool) -> None:
        """Start TLS on *raw*: the handshake begins, the application is told it is connected.

        *initial_data*: ciphertext the previous protocol read already (STARTTLS).
        """
        self.raw = raw
        self.app_transport._fileno = raw._fileno
        raw.set_write_buffer_limits(self._high, self._low)
        if self._closing:
            # close() or abort() from a listener's transport_setup, before
            # there was a connection to close: as over plain TCP, the
            # application hears connection_made then connection_lost(None),
            # and the TCP connection closes without a handshake.
            self.engine.close()
            if app_made_now:
                self._make_app()
            else:
                self._reactor.call_soon(self._make_app)
            raw.close()
            return
        self._timer = self._reactor.call_later(self._handshake_timeout, self._handshake_timed_out)
        if app_made_now:
            self._make_app()
        else:
            self._reactor.call_soon(self._make_app)
        self._feed(None)  # a client's ClientHello
        if initial_data:
            self._feed(initial_data)

    def _make_app(self) -> None:
        if self._app_made or self._app_lost:
            return
        self._app_made = True
        try:
            self.app_protocol.connection_made(self.app_transport)
        except Exception as exc:
            self._app_error(exc, "connection_made")

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> Optional[bool]:
        if self._closing and self.raw is not None:
            self.raw.close()  # we were closing anyway: the peer just did not say close_notify
        elif not self.engine.peer_closed and self.engine.state is not TLSState.CLOSED:
            self._feed(b"")  # EOF without close_notify: SSLEOFError (truncation), or mid-handshake
        return True  # we close the stream transport ourselves, when TLS is done with it

    def pause_writing(self) -> None:
        self._output_paused = True  # the peer is not reading what we send
        self._update_app_flow()

    def resume_writing(self) -> None:
        self._output_paused = False
        if self._tls_paused:
            self._tls_paused = False
            self._update_reading()
        self._update_app_flow()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._cancel_timer()
        exc = self._failure or exc
        if self.engine.state is TLSState.HANDSHAKING and exc is None:
            exc = ConnectionResetError("the connection closed during the TLS handshake")
        self._handshake_finished(exc)
        if self._app_made and not self._app_lost:
            self._app_lost = True
            try:
                self.app_protocol.connection_lost(exc)
            except Exception as error:
                self._reactor.call_exception_handler({
                    "message": "protocol.connection_lost() raised", "exception": error,
                    "transport": self.app_transport, "protocol": self.app_protocol})
        self._app_lost = True

    # -- feeding the engine ---------------------------------------------------------------

    def _feed(self, data: Optional[bytes]) -> None:
        answering = self.engine.state is TLSState.OPEN  # (the flush at handshake's end is the app's data)
        try:
            events = self.engine.receive(data)  # (None: only move the handshake on)
        except ssl.SSLError as exc:
            self._flush()  # the alert that tells the peer why
            self._fail(exc)
            return
        if self._flush() and answering and self._output_paused and not self._tls_paused:
            self._tls_paused = True  # see the module docstring: TLS's own answers are bounded
            self._update_reading()
        for event in events:
            if event is HANDSHAKE_DONE:
                self._cancel_timer()
                self._handshake_finished(None)
                self._update_app_flow()
            elif event is PEER_CLOSED:
                self._peer_closed()
            elif not self._closing and not self._app_lost and isinstance(event, bytes):
                self._deliver(event)

    def _deliver(self, data: bytes) -> None:
        reactor = self._reactor
        if reactor.watch_io:
            reactor.observe_io(self.app_transport, True, data, len(data))
        app = self.app_protocol
        try:
            if isinstance(app, BufferedProtocol):
                _feed_buffered(app, data)
            else:
                app.data_received(data)
        except Exception as exc:
            self._app_error(exc, "data_received")

    def _flush(self) -> int:
        """Write whatever the engine produced to the stream transport; how many bytes."""
        out = self.engine.bytes_to_send()
        if not out or self.raw is None or self.raw.is_closing():
            return 0  # (closing: aborted, nothing more goes out)
        self.raw.write(out)
        return len(out)

    def _peer_closed(self) -> None:
        """close_notify: the peer is done. TLS has no half-close, so we close too."""
        if not self._closing:
            self._closing = True
            try:
                self.app_protocol.eof_received()  # (its answer cannot keep a TLS connection half-open)
            except Exception as exc:
                self._app_error(exc, "eof_received")
                return
        self._close_notify()

    def _close_notify(self) -> None:
        try:
            self.engine.close()
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        self._flush()
        if self.engine.state is TLSState.CLOSED and self.raw is not None:
            self._cancel_timer()
            self.raw.close()  # flushes our close_notify, then closes

    # -- failures and deadlines -------------------------------------------------------------

    def _fail(self, exc: BaseException, *, abort: bool = False) -> None:
        if self._failure is None:
            self._failure = exc
            logger.debug("%r: TLS failed: %r", self.raw, exc)
        self._closing = True
        if self.raw is not None:
            self.raw.abort() if abort else self.raw.close()

    def _handshake_finished(self, exc: Optional[BaseException]) -> None:
        callback, self._on_handshake = self._on_handshake, None
        if callback is not None:
            callback(exc)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self.engine.state is TLSState.HANDSHAKING:
            self._fail(TimeoutError(f"the TLS handshake did not complete within "
                                    f"{self._handshake_timeout:g} s"), abort=True)

    def _shutdown_timed_out(self) -> None:
        self._timer = None
        if self.raw is not None:
            self.raw.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _app_error(self, exc: BaseException, method: str) -> None:
        self._reactor.call_exception_handler({
            "message": f"protocol.{method}() raised; aborting the connection", "exception": exc,
            "transport": self.app_transport, "protocol": self.app_protocol})
        self._fail(exc, abort=True)

    # -- what TLSTransport asks for ----------------------------------------------------------

    def write(self, data: BytesLike) -> None:
        if self._closing or self._app_lost or (self.raw is not None and self.raw.is_closing()):
            logger.debug("%r: write() after close(); data dropped", self.app_transport)
            return
        reactor = self._reactor
        n = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        if not n:
            return
        try:
            self.engine.send(bytes(data))
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        if reactor.watch_io:
            reactor.observe_io(self.app_transport, False, data, n)
        self._flush()
        self._update_app_flow()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.engine.state is TLSState.HANDSHAKING:
            self.engine.close()
            if self.raw is not None:
                self.raw.close()
            return
        self._cancel_timer()
        self._timer = self._reactor.call_later(self._shutdown_timeout, self._shutdown_timed_out)
        self._update_reading()  # keep reading: the peer's close_notify must get in
        self._close_notify()

    def abort(self) -> None:
        self._closing = True
        if self.raw is not None:
            self.raw.abort()

    def buffered(self) -> int:
        """Bytes waiting to go out: plaintext held for the handshake plus ciphertext queued."""
        raw = self.raw.get_write_buffer_size() if self.raw is not None else 0
        return self.engine.pending_plaintext + raw

    def set_limits(self, high: int, low: int) -> None:
        self._high, self._low = high, low
        if self.raw is not None:
            self.raw.set_write_buffer_limits(high, low)
        self._update_app_flow()

    def pause_app_reading(self) -> None:
        self._app_reading_paused = True
        self._update_reading()

    def resume_app_reading(self) -> None:
        self._app_reading_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        raw = self.raw
        if raw is None:
            return
        # While closing we read only to get the peer's close_notify.
        paused = self._tls_paused or (self._app_reading_paused and not self._closing)
        if paused:
            raw.pause_reading()
        else:
            raw.resume_reading()

    def _update_app_flow(self) -> None:
        if not self._app_made or self._app_lost:
            return
        size = self.buffered()
        try:
            if not self._app_writing_paused and size > self._high:
                self._app_writing_paused = True
                self.app_protocol.pause_writing()
            elif self._app_writing_paused and size <= self._low:
                self._app_writing_paused = False
                self.app_protocol.resume_writing()
        except Exception as exc:
            self._app_error(exc, "pause_writing" if self._app_writing_paused else "resume_writing")


def _feed_buffered(app: BufferedProtocol, data: bytes) -> None:
    """Hand plaintext to a BufferedProtocol through its own buffers, as the socket would."""
    view = memoryview(data)
    while view:
        buf = memoryview(app.get_buffer(len(view)))
        if buf.readonly or not buf.nbytes:
            raise ValueError("get_buffer() must return a writable, non-empty buffer")
        n = min(buf.nbytes, len(view))
        buf[:n] = view[:n]
        app.buffer_updated(n)
        view = view[n:]


class TLSTransport:
    """The application's transport over TLS: plaintext, with asyncio's Transport API."""

    __slots__ = ("_tls", "_fileno", "__weakref__")

    layer = "plaintext"  # for tracers and the traffic log (the stream transport's bytes are "tls")

    def __init__(self, tls: TLSProtocol) -> None:
        self._tls = tls
        self._fileno = -1  # known once attached

    def __repr__(self) -> str:
        raw = self._tls.raw
        fd = raw._fileno if raw is not None else "-"
        return f"<TLSTransport fd={fd} {self._tls.engine.state.value} buffered={self._tls.buffered()}>"

    def write(self, data: BytesLike) -> None:
        """Encrypt and send *data* (queued, in order, until the handshake completes)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
        self._tls.write(data)

    def writelines(self, list_of_data: Iterable[BytesLike]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close (write_eof); close() sends close_notify")

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Send close_notify, wait (up to ssl_shutdown_timeout) for the peer's, then close."""
        self._tls.close()

    def abort(self) -> None:
        """Close now: no close_notify, buffered data dropped."""
        self._tls.abort()

    def is_closing(self) -> bool:
        raw = self._tls.raw
        return self._tls._closing or (raw is not None and raw.is_closing())

    def pause_reading(self) -> None:
        self._tls.pause_app_reading()

    def resume_reading(self) -> None:
        self._tls.resume_app_reading()

    def is_reading(self) -> bool:
        raw = self._tls.raw
        return not self._tls._app_reading_paused and raw is not None and not raw.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._tls.buffered()

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        self._tls.set_limits(*water_marks(high, low))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls._low, self._tls._high

    def set_max_write_buffer_size(self, size: Optional[int]) -> None:
        """The hard cap, on the ciphertext queued (see StreamTransport)."""
        raw = self._tls.raw
        if raw is not None:
            raw.set_max_write_buffer_size(size)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's TLS names (``ssl_object``, ``peercert``, ``cipher``, ``compression``,
        ``sslcontext``, ``server_hostname``), else the stream transport's."""
        tls = self._tls
        obj = tls.engine.ssl_object
        done = tls.engine.state is not TLSState.HANDSHAKING
        if name == "ssl_object":
            return obj
        if name == "sslcontext":
            return tls.context
        if name == "server_hostname":
            return tls.server_hostname
        if name == "peercert":
            return obj.getpeercert() if done else default
        if name == "cipher":
            return obj.cipher() if done else default
        if name == "compression":
            return obj.compression() if done else default
        raw = tls.raw
        return raw.get_extra_info(name, default) if raw is not None else default

    def get_protocol(self) -> AppProtocol:
        return self._tls.app_protocol

    def set_protocol(self, protocol: AppProtocol) -> None:
        self._tls.app_protocol = protocol


def start_tls(reactor: TransportHost, transport: StreamTransport, protocol: AppProtocol,
              context: ssl.SSLContext, *, server_side: bool = False,
              server_hostname: Optional[str] = None,
              ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
              ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
              initial_data: BytesLike = b"",
              on_handshake: Optional[Callable[[Optional[BaseException]], None]] = None) -> TLSTransport:
    """Upgrade an open stream connection to TLS (STARTTLS); returns the plaintext transport.

    From the next byte on, what *transport* reads is TLS. *protocol* (often
    the same object as before) gets ``connection_made(tls_transport)`` from
    the loop. *initial_data*: bytes the old protocol already read past the
    STARTTLS command (what its framer holds): they are the start of the TLS
    stream, and are fed to it first. Plaintext written before the call goes
    out first, in order.
    """
    if not isinstance(transport, StreamTransport):
        raise TypeError(f"start_tls() needs a StreamTransport, not {transport!r}")
    if transport.is_closing():
        raise RuntimeError("start_tls() on a closing transport")
    tls = TLSProtocol(reactor, protocol, context, server_side=server_side,
                      server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
                      ssl_shutdown_timeout=ssl_shutdown_timeout, on_handshake=on_handshake)
    transport.set_protocol(tls)
    tls.attach(transport, bytes(initial_data), app_made_now=False)
    return tls.app_transport
