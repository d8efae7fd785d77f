"""Descriptor accounting shared by the subprocess helpers (Linux /proc, or /dev/fd)."""

from __future__ import annotations

import os
import resource

FD_DIRS = ("/proc/self/fd", "/dev/fd")


def fd_dir() -> str | None:
    for path in FD_DIRS:
        if os.path.isdir(path):
            return path
    return None


def open_fds() -> set[int]:
    """The descriptors open in this process (without the one listdir() itself used)."""
    path = fd_dir()
    if path is None:
        raise RuntimeError("no /proc/self/fd or /dev/fd to count descriptors with")
    fds = set()
    for name in os.listdir(path):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:  # listdir's own directory descriptor, closed by now
            continue
        fds.add(fd)
    return fds


def lower_fd_limit(headroom: int) -> int:
    """Set RLIMIT_NOFILE's soft limit so that exactly *headroom* descriptors are free.

    The limit caps descriptor *numbers*, so it is computed from the highest
    one open plus the holes below it. Returns the new soft limit.
    """
    fds = open_fds()
    free_below = (max(fds) + 1) - len(fds)  # holes below the highest open fd
    limit = max(fds) + 1 + max(headroom - free_below, 0)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and limit > hard:
        raise RuntimeError(f"cannot lower the fd limit to {limit}: hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return limit
