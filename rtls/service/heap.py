"""The process heap: glibc malloc settings for a long-running NumPy service.

glibc serves a large block with mmap and gives it back to the system when it is freed; but
after freeing such a block it raises its mmap threshold to that block's size (up to 32 MB,
mallopt(3), "M_MMAP_THRESHOLD"), so from then on blocks of that size come from the heap, and
freed heap space below a live block stays resident. Each thread also gets an arena of its own
(up to 8 per core) that keeps its freed space. The engine allocates tick-sized arrays (MBs) in
two worker threads, so its resident memory grew with every burst and stayed there: at 10,000
tags under 100,000 observations/s, 251 MB against 175-184 MB with the threshold fixed at 4 MiB
and the arenas capped (docs/performance.md, "Memory and work at 1,000 gateways"). Setting the
threshold explicitly turns off the dynamic raising, of the trim threshold too, so that is set
to twice the mmap threshold as the dynamic rule keeps it. Not lower: at glibc's initial
128 KiB (and its 128 KiB trim) every array above it came fresh from the kernel, page faults
and all, and a tick cost ~50 % more CPU. Linux with glibc only; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "tune_heap"]

MMAP_THRESHOLD = 4 * 1024 * 1024  # blocks from here up are mmapped, always
ARENA_MAX = 2  # the loop thread's arena and one for the worker threads

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_LOG = logging.getLogger(__name__)


def tune_heap(mmap_threshold: int = MMAP_THRESHOLD, arena_max: int = ARENA_MAX) -> bool:
    """Fix glibc's mmap threshold (and its trim threshold at twice that) and cap its arenas;
    call once at start, before the worker threads. Returns whether the settings took (False
    off glibc: nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or no libc.so.6: its own allocator's rules
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold) == 1)
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1) and ok
    ok = bool(mallopt(_M_ARENA_MAX, arena_max) == 1) and ok
    if not ok:
        _LOG.warning("glibc refused the heap settings (mallopt)")
    return ok
