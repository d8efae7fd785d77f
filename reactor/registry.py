"""The registry: what a reactor has open, and the contract its transports rely on.

Theory of operation
-------------------
The loop (``loop.BaseReactor``) knows file descriptors, timers, threads and
signals; it knows nothing of TCP, UDP or Unix sockets. Yet closing a reactor
must release every socket opened on it, ``stats()`` must count connections
and bytes, and instruments want to hear when a connection opens and closes.
So the loop owns one ``ConnectionRegistry``: transports and endpoints
(listeners, connectors) *register themselves* in it, and the loop only ever
talks to them through the two tiny interfaces below (``RegisteredTransport``,
``RegisteredEndpoint``). Nothing here imports a transport class: the
dependency points up only as a structural type.

``TransportHost`` is the other half of the contract: everything a transport,
listener or connector may use of the reactor it runs on. ``BaseReactor``
satisfies it, so a transport runs on a plain ``BaseReactor`` as well as on
``network.Reactor``, and a test can hand it any object with these members.
Keeping the list explicit is what keeps the layers honest: a transport that
needs something new from the loop must add it here, in the open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .handles import Handle, TimerHandle
    from .instruments import InstrumentSet

__all__ = ["ConnectionRegistry", "TransportHost", "RegisteredTransport", "RegisteredEndpoint"]


class RegisteredTransport(Protocol):
    """What the registry needs of a transport: its counters and a way to end it."""

    bytes_received: int
    bytes_sent: int

    def get_write_buffer_size(self) -> int: ...
    def get_server(self) -> Any: ...
    def _shutdown(self) -> None: ...


class RegisteredEndpoint(Protocol):
    """A listener or a pending connector: something to close when the reactor closes."""

    def _reactor_closing(self) -> None: ...


class ConnectionRegistry:
    """Every transport and endpoint open on one reactor, and the totals of those closed."""

    __slots__ = ("_transports", "_endpoints", "_closed_bytes_received", "_closed_bytes_sent",
                 "accepts_shed", "_instruments")

    def __init__(self, instruments: Callable[[], "Optional[InstrumentSet]"]) -> None:
        self._transports: set[RegisteredTransport] = set()
        self._endpoints: set[RegisteredEndpoint] = set()
        self._closed_bytes_received = 0
        self._closed_bytes_sent = 0
        self.accepts_shed = 0  # peers turned away by any listener (EMFILE, FD_SETSIZE)
        self._instruments = instruments  # the loop's current InstrumentSet, read when needed

    def __len__(self) -> int:
        return len(self._transports)

    # -- transports ----------------------------------------------------------

    def opened(self, transport: RegisteredTransport) -> None:
        """A transport now owns a socket on this reactor."""
        self._transports.add(transport)
        instruments = self._instruments()
        if instruments is not None and instruments.connection_opened is not None:
            instruments.connection_opened(transport)

    def closed(self, transport: RegisteredTransport, exc: Optional[BaseException] = None) -> None:
        """The transport's socket is closed; its byte counts join the totals."""
        if transport not in self._transports:
            return
        self._transports.discard(transport)
        self._closed_bytes_received += transport.bytes_received
        self._closed_bytes_sent += transport.bytes_sent
        instruments = self._instruments()
        if instruments is not None and instruments.connection_closed is not None:
            instruments.connection_closed(transport, exc)

    def transports(self) -> list[Any]:
        return list(self._transports)

    def owned_by(self, server: Any) -> set[Any]:
        """The transports a listener accepted and that are still open.

        Derived rather than kept per listener: a set entry is ~65 bytes, and
        5,000 idle connections should not pay for it twice.
        """
        return {t for t in self._transports if t.get_server() is server}

    def totals(self) -> tuple[int, int, int]:
        """(bytes received, bytes sent, bytes buffered), closed transports included."""
        live = self._transports
        return (self._closed_bytes_received + sum(t.bytes_received for t in live),
                self._closed_bytes_sent + sum(t.bytes_sent for t in live),
                sum(t.get_write_buffer_size() for t in live))

    # -- endpoints -----------------------------------------------------------

    def add_endpoint(self, endpoint: RegisteredEndpoint) -> None:
        self._endpoints.add(endpoint)

    def discard_endpoint(self, endpoint: RegisteredEndpoint) -> None:
        self._endpoints.discard(endpoint)

    # -- the end -------------------------------------------------------------

    def close_all(self) -> None:
        """The reactor is closing: endpoints stop, transports end now.

        Queued callbacks will never run, so each transport finishes at once
        (``_shutdown``: its protocol gets ``connection_lost`` if it ever got
        ``connection_made``) and every socket is closed before the selector is.
        """
        for endpoint in list(self._endpoints):
            endpoint._reactor_closing()
        self._endpoints.clear()
        for transport in list(self._transports):
            transport._shutdown()
        self._transports.clear()


class TransportHost(Protocol):
    """All that transports, listeners and connectors use of their reactor.

    ``BaseReactor`` is one; see the module docstring. ``watch_io`` is true
    while someone wants each read and send reported (``observe_io``): the
    one flag the busiest code tests. ``fd_limit`` is the first descriptor
    number the selector cannot watch (``FD_SETSIZE`` for ``select()``), or
    None when there is no such limit.
    """

    registry: ConnectionRegistry
    watch_io: bool
    fd_limit: Optional[int]

    def add_reader(self, fileobj: Any, callback: Callable[..., Any], *args: Any) -> None: ...
    def remove_reader(self, fileobj: Any) -> bool: ...
    def add_writer(self, fileobj: Any, callback: Callable[..., Any], *args: Any) -> None: ...
    def remove_writer(self, fileobj: Any) -> bool: ...
    def call_soon(self, callback: Callable[..., Any], *args: Any) -> "Handle": ...
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> "TimerHandle": ...
    def time(self) -> float: ...
    def call_exception_handler(self, context: dict[str, Any]) -> None: ...
    def observe_io(self, transport: Any, received: bool, data: Any, n: int) -> None: ...
