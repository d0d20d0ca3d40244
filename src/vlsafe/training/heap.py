"""Keep freed CPU memory in the process heap, so that a training step reuses last step's pages.

glibc serves every allocation above a threshold (128 KiB, adapting up to 32 MiB) with a fresh
`mmap` and returns it to the kernel on free. A world-model step allocates and frees tensors of
~50 MB (1,024 frames of 64x64x3 floats) dozens of times, so every step page-faults its whole
working set again: on the 2-core development machine that was a third of an `xs` step
(`benchmarks/worldmodel.py` measures with and without). Raising the mmap and trim thresholds
keeps those pages in the heap; the process then holds on to its peak memory instead of
returning it between steps. Elsewhere than Linux/glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

__all__ = ["reuse_freed_memory"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LIMIT = 2 ** 31 - 1  # the largest value mallopt takes: effectively "never"


@lru_cache(maxsize=1)
def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # glibc only (musl has none)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LIMIT)) and bool(mallopt(M_TRIM_THRESHOLD, LIMIT))
