"""The exceptions reactor raises on purpose, so callers can tell them apart.

Each one subclasses the built-in exception a caller would already catch for
the same situation (``ValueError`` for bad input, ``ConnectionError`` for a
connection that ended, ``TimeoutError`` for a deadline), so generic handlers
keep working and specific ones can be specific.
"""

from __future__ import annotations

__all__ = [
    "ReactorError",
    "FramingError",
    "FrameTooLong",
    "WriteBufferOverflow",
    "ConnectTimeout",
    "DatagramTruncated",
]


class ReactorError(Exception):
    """Base class of reactor's own exceptions."""


class FramingError(ReactorError, ValueError):
    """The peer's byte stream violates the framing; the framer cannot resynchronise.

    After a ``FramingError`` the framer is broken: every later call raises it
    again. The only sensible reaction is to close the connection.
    """


class FrameTooLong(FramingError):
    """One frame exceeded ``max_length``; it was (or is being) discarded.

    Unlike its base class this error is recoverable: the framer skips the rest
    of the offending frame and carries on with the next one.
    """

    def __init__(self, message: str, *, length: int | None, max_length: int) -> None:
        super().__init__(message)
        self.length = length  # the declared length, or None if not known yet
        self.max_length = max_length


class WriteBufferOverflow(ReactorError, ConnectionError):
    """A transport's write buffer passed its hard cap: the peer is not reading.

    The transport was aborted; this is the ``exc`` its protocol's
    ``connection_lost`` receives.
    """


class ConnectTimeout(ReactorError, TimeoutError):
    """``connect_tcp``/``connect_unix`` did not complete within its timeout."""


class DatagramTruncated(ReactorError, OSError):
    """A datagram larger than the endpoint's receive buffer arrived; it was discarded.

    Passed to ``DatagramProtocol.error_received``, never raised into the loop.
    """
