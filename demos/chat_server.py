"""``python -m demos.chat_server``: the chat server (it lives in the ``demos.chat`` package).

See demos/chat/server.py for the options and demos/chat/__init__.py for
the package's map.
"""

from __future__ import annotations

import sys

from .chat.server import DEFAULT_PORT, ChatServer, main

__all__ = ["ChatServer", "DEFAULT_PORT", "main"]

if __name__ == "__main__":
    sys.exit(main())
