"""``python -m demos.chat_client``: the terminal client (it lives in ``demos.chat.client``)."""

from __future__ import annotations

import sys

from .chat.client import ChatClient, main

__all__ = ["ChatClient", "main"]

if __name__ == "__main__":
    sys.exit(main())
