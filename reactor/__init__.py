"""reactor: a single-threaded event loop on the standard library's ``selectors``.

Layers, each importing only from the ones above it in this list:

- ``handles``: a scheduled callback and its cancelled bit (the error boundary)
- ``timers``: the timer heap, with lazy cancellation and compaction
- ``waker``, ``signals``: how threads and signals interrupt select()
- ``registry``: what is open on a reactor, and ``TransportHost``, the
  contract between the loop and everything above it
- ``loop``: ``BaseReactor``, the loop that ties them to a selector
- ``errors``, ``buffers``, ``framing``: sans-IO pieces (no sockets inside)
- ``protocols``: the callback classes users subclass
- ``transports``: ``SocketTransport``, the lifecycle every transport shares
- ``streams``: ``StreamTransport``, a connected TCP or Unix socket
- ``datagrams``: ``DatagramTransport``, UDP with whole-datagram send queues
- ``tls``: ``TLSEngine``, TLS as a sans-IO state machine (``ssl.MemoryBIO``)
- ``tlsstreams``: ``TLSTransport``, TLS over a stream transport, and STARTTLS
- ``listeners``: listening and accepting (TCP and Unix)
- ``connectors``: connecting (TCP and Unix)
- ``network``: ``Reactor``, the loop plus its network front doors

See docs/ARCHITECTURE.md for the map and one event's path through it.
"""

from .errors import ConnectTimeout, DatagramTruncated, FrameTooLong, FramingError, ReactorError, WriteBufferOverflow
from .datagrams import DatagramTransport
from .framing import LengthPrefixFramer, LineFramer, NetstringFramer
from .handles import Handle, TimerHandle
from .connectors import Connector
from .listeners import Listener
from .loop import MAX_SELECT_TIMEOUT, BaseReactor
from .network import Reactor
from .protocols import BaseProtocol, BufferedProtocol, DatagramProtocol, LineProtocol, Protocol
from .registry import ConnectionRegistry, TransportHost
from .streams import StreamTransport
from .transports import SocketTransport

__all__ = [
    "Reactor", "BaseReactor", "Handle", "TimerHandle", "MAX_SELECT_TIMEOUT",
    "BaseProtocol", "Protocol", "BufferedProtocol", "LineProtocol", "DatagramProtocol",
    "SocketTransport", "StreamTransport", "DatagramTransport", "Listener", "Connector",
    "ConnectionRegistry", "TransportHost", "TLSEngine", "TLSTransport",
    "LineFramer", "LengthPrefixFramer", "NetstringFramer",
    "ReactorError", "FramingError", "FrameTooLong", "WriteBufferOverflow", "ConnectTimeout",
    "DatagramTruncated", "COMPILED",
]
__version__ = "0.1.0"

# True when the core modules are the mypyc-compiled build
# (``REACTOR_COMPILE=1 pip install .``, see setup.py), False for pure Python.
from importlib.machinery import EXTENSION_SUFFIXES as _EXT
from . import loop as _loop

COMPILED: bool = _loop.__file__ is not None and _loop.__file__.endswith(tuple(_EXT))
del _EXT, _loop

def __getattr__(name: str) -> object:
    """TLSEngine and TLSTransport on first use: importing ssl costs ~4 MiB of RSS
    and ~25 ms, which a server without TLS should not pay."""
    if name == "TLSEngine":
        from .tls import TLSEngine
        return TLSEngine
    if name == "TLSTransport":
        from .tlsstreams import TLSTransport
        return TLSTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
