"""Waker behaviours that mutation testing found unpinned (python -m tests.mutation)."""

from __future__ import annotations

import os

from reactor.waker import Waker


def test_drain_returns_the_signal_numbers_of_every_chunk():
    waker = Waker()
    try:
        # Signal bytes spread over more than one recv() (4 KiB) among wake-up bytes.
        os.write(waker.write_fileno(), bytes([10]) + b"\0" * 5000 + bytes([12]))
        waker.wake()
        assert waker.drain() == bytes([10, 12])
        assert waker.drain() == b""
    finally:
        waker.close()
