"""Freed heap memory given back to the operating system, so a run's RSS follows what it uses.

glibc keeps the memory of freed CPU tensors in its heap. With batches of varying shapes the free
chunks are scattered, the top of the heap stays in use and glibc's own trimming seldom fires:
a tiny 1-thread fine-tuning run held 3.7 GB of RSS at update 450 of which 2.2 GB were free
chunks (``malloc_trim(0)`` on the live process brought it to 1.5 GB), and its DataLoader
worker, forked from that heap, held 2.8 GB of private pages of its own as it reused those
chunks. Three such runs at once were OOM-killed on 24 GB. Two remedies, both used:

- a fixed mmap threshold (4 MiB): glibc otherwise raises its threshold to the size of each large
  block freed (up to 32 MiB), so the activations of the next, differently shaped batch come from
  the heap and scatter it; above a fixed threshold they are mapped and unmapped whole;
- ``malloc_trim(0)`` every 20 batches and before the loader forks its workers: hands every whole
  free page of the heap back.

Measured in ``benchmarks/results/finetune_rss.md``. A ``MALLOC_MMAP_THRESHOLD_`` set by the user
wins over the threshold here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

#: allocations of at least this many bytes are mapped (and unmapped when freed)
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


@functools.cache
def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (which also stops it from moving); True when it was set.

    Does nothing where the C library is not glibc or the user set ``MALLOC_MMAP_THRESHOLD_``.
    """
    if _malloc_trim() is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(threshold)))


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; True when glibc released any memory."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


class HeapReleaser:
    """Calls :func:`release_free_heap` at every ``interval``-th :meth:`tick` (one per batch);
    pins the mmap threshold (:func:`fix_mmap_threshold`) when it is made.

    A release costs a walk over the heap's free chunks (about a millisecond at these sizes),
    small beside a tiny model's step of a few hundred milliseconds.
    """

    def __init__(self, interval: int = 20):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.ticks = 0
        fix_mmap_threshold()

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % self.interval == 0:
            release_free_heap()
