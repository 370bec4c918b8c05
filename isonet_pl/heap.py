"""Keep freed memory in the process while the network runs (glibc's malloc).

glibc gives every allocation above 32 MiB its own fresh mapping from the kernel and returns it on
``free``, so each large tensor of a forward pass is zero-filled page by page anew. For predict's tiles
(hundreds of MiB per activation) that is most of the time: a 128x208x208 float32 forward of the CPU
presets' U-Net took 15.5 s, 6.4 s of them in the kernel, against 10.0 s with freed memory reused
(``bench/perf/cpu_conv.py``, bench/RESULTS.md). Inside :func:`reused_heap` allocations come from the heap and
freed memory stays there for the next tile; on leaving, glibc's default thresholds are set back and the
free memory is returned to the system.

predict does not keep it: streaming a tomogram interleaves buffers of many sizes (chunks read, compressed,
written), and a heap kept for the whole prediction fragmented until its peak grew with the tomogram
(predicting 0.5 GiB from Zarr to Zarr: 2.8 GiB peak RSS against 1.3 GiB; 2 GiB: 5.5 GiB); kept during each
tile's network call only, the peak still rose to 2.1–2.3 GiB. predict gets most of the gain from
:func:`use_huge_pages` instead (torch maps its large tensors in 2 MiB pages: 512× fewer faults) at no cost in
memory: 54 s and 1.3 GiB there against 92 s without (bench/perf/heap_rss.py, bench/RESULTS.md). refine keeps
the heap throughout (its arrays are a fixed set of sizes held in memory anyway).

Only the main arena can hold large blocks (the other arenas' heaps are 64 MiB at most: their large blocks
are always mapped afresh), and glibc hands threads other arenas unless told otherwise before the first
thread starts (importing zarr starts one): :func:`share_one_arena`, called first thing by the command
line, makes every thread use the main arena. A program that calls the workflows should call it before its
imports too. Elsewhere (macOS, musl, Windows) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -3, -4, -8
#: What glibc's dynamic thresholds reach for large blocks (mallopt turns the dynamic adjustment off, so the
#: settings after the block are set to these): mapping above 32 MiB, trimming above 64 MiB of free top.
AFTER = ((M_MMAP_MAX, 65536), (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 64 << 20))
INSIDE = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))  # -1: never trim (mallopt(3))

_lock = threading.Lock()
_depth = 0


def _libc():
    """glibc, or None where mallopt/malloc_trim are missing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def share_one_arena() -> None:
    """Make every thread allocate from glibc's main arena (process-wide; call before threads start)."""
    libc = _libc()
    if libc is not None and libc.mallopt(M_ARENA_MAX, 1) != 1:
        logger.debug("malloc arena setting not accepted")


def use_huge_pages() -> None:
    """Ask torch to back its large CPU tensors (2 MiB and more) with transparent huge pages.

    Sets ``THP_MEM_ALLOC_ENABLE=1`` unless the environment already says otherwise; torch reads it once, at
    its first allocation, so call this before importing torch. Where the kernel's transparent huge pages
    are off (``/sys/kernel/mm/transparent_hugepage/enabled``: never) it changes nothing.
    """
    import os

    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _set(libc, settings) -> bool:
    return all(libc.mallopt(key, value) == 1 for key, value in settings)


@contextmanager
def reused_heap():
    """Inside: freed memory is kept for reuse instead of being unmapped (see the module docstring).

    Re-entrant; the settings are process-wide (glibc has no other kind).
    """
    global _depth
    libc = _libc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0 and not _set(libc, INSIDE):
            logger.debug("malloc settings not accepted; freed memory is unmapped as usual")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, AFTER)
                libc.malloc_trim(0)
