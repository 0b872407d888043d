"""Process settings that make training faster; applications opt in, the library never applies them.

A training step of the sequence schedule allocates and frees tens of megabytes of activations.
With glibc's default settings, malloc returns freed memory at the top of the heap to the operating
system once more than a few megabytes are free, and serves blocks of a few megabytes by ``mmap``:
every step then touches fresh pages, and each first touch is a page fault (about 3 microseconds
on the machine the benchmarks ran on, about a quarter of a two-moons sequence epoch in all).
``keep_freed_memory`` keeps freed memory in the process for reuse instead.  The ``bisnn-pyro``
command calls it; a script calls it once before training.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems


def keep_freed_memory(limit_mb: int = 1024) -> bool:
    """Ask glibc's malloc to keep up to ``limit_mb`` megabytes of freed memory for reuse and to serve
    blocks below 32 MB from its heap rather than by fresh ``mmap`` calls.

    Process-wide and irreversible (the process's resident memory stays near its peak).  Returns
    whether the setting applied: False where the C library is not glibc (macOS, Windows, musl)."""
    if limit_mb < 0:
        raise ValueError(f"limit_mb must be >= 0, got {limit_mb}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(limit_mb << 20, 2**31 - 1)
    return bool(mallopt(_M_TRIM_THRESHOLD, limit)) and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
