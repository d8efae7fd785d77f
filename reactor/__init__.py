"""reactor: a single-threaded event loop on the standard library's ``selectors``.

Layers, each importing only from the ones above it in this list:

- ``handles``: a scheduled callback and its cancelled bit (the error boundary)
- ``timers``: the timer heap, with lazy cancellation and compaction
- ``waker``, ``signals``: how threads and signals interrupt select()
- ``loop``: the ``Reactor`` that ties them to a selector

See docs/ARCHITECTURE.md for the map and one event's path through it.
"""

from .handles import Handle, TimerHandle
from .loop import MAX_SELECT_TIMEOUT, Reactor

__all__ = ["Reactor", "Handle", "TimerHandle", "MAX_SELECT_TIMEOUT"]
__version__ = "0.1.0"
