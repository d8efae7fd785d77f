"""reactor: a single-threaded event loop on the standard library's ``selectors``.

Layers, each importing only from the ones above it in this list:

- ``handles``: a scheduled callback and its cancelled bit (the error boundary)
- ``timers``: the timer heap, with lazy cancellation and compaction
- ``waker``, ``signals``: how threads and signals interrupt select()
- ``loop``: ``BaseReactor``, the loop that ties them to a selector
- ``errors``, ``buffers``, ``framing``: sans-IO pieces (no sockets inside)
- ``protocols``: the callback classes users subclass
- ``transports``: a connected stream socket, its buffers, its protocol
- ``streams``: listening, accepting and connecting (TCP and Unix)
- ``datagrams``: UDP endpoints with whole-datagram send queues
- ``network``: ``Reactor``, the loop plus its network front doors

See docs/ARCHITECTURE.md for the map and one event's path through it.
"""

from .errors import ConnectTimeout, DatagramTruncated, FrameTooLong, FramingError, ReactorError, WriteBufferOverflow
from .datagrams import DatagramTransport
from .framing import LengthPrefixFramer, LineFramer, NetstringFramer
from .handles import Handle, TimerHandle
from .loop import MAX_SELECT_TIMEOUT, BaseReactor
from .network import Reactor
from .protocols import BaseProtocol, BufferedProtocol, DatagramProtocol, LineProtocol, Protocol
from .streams import Connector, Listener
from .transports import StreamTransport

__all__ = [
    "Reactor", "BaseReactor", "Handle", "TimerHandle", "MAX_SELECT_TIMEOUT",
    "BaseProtocol", "Protocol", "BufferedProtocol", "LineProtocol", "DatagramProtocol",
    "StreamTransport", "DatagramTransport", "Listener", "Connector",
    "LineFramer", "LengthPrefixFramer", "NetstringFramer",
    "ReactorError", "FramingError", "FrameTooLong", "WriteBufferOverflow", "ConnectTimeout",
    "DatagramTruncated",
]
__version__ = "0.1.0"
