"""What the demos share on the command line: one-line error messages."""

from __future__ import annotations

import os


def why(exc: OSError) -> str:
    """The bare reason for *exc*, such as "Address already in use".

    The demos' messages name the address themselves; reactor's
    ``listen_tcp`` names it in its message too, and ``socket.create_server``
    adds "(while attempting to bind on address ...)". A failed name lookup
    (``socket.gaierror``) has a negative errno and its own message.
    """
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return (exc.strerror or str(exc)).partition(" (while attempting")[0]
