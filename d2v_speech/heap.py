"""Freed heap memory given back to the operating system, so a run's RSS follows what it uses.

glibc keeps the memory of freed CPU tensors in its heap. With batches of varying shapes the free
chunks are scattered, the top of the heap stays in use and glibc's own trimming seldom fires:
a tiny 1-thread fine-tuning run held 3.7 GB of RSS at update 450 of which 2.2 GB were free
chunks (``malloc_trim(0)`` on the live process brought it to 1.5 GB), and its DataLoader
worker, forked from that heap, held 2.8 GB of private pages of its own as it reused those
chunks: 7.2 GB for one run, and three such runs at once were OOM-killed on 24 GB. What helps:

- always: ``malloc_trim(0)`` every 20 batches and before a loader forks its workers hands every
  whole free page back, so the workers start small (:class:`HeapReleaser`);
- on request (the YAML's ``heap_mmap_threshold_mib``): a fixed mmap threshold. glibc otherwise
  raises its threshold to the size of each large block freed (up to 32 MiB), so the activations
  of the next, differently shaped batch come from the heap and scatter it; above a fixed
  threshold they are mapped and unmapped whole. That bounds the RSS (a tiny fine-tuning run
  stayed under 2.7 GB at 4 MiB) but costs the page faults of every large block: 13-27 % more CPU
  time per fine-tuning update here, up to 50 % per pretraining step.
- on request (the YAML's ``heap_keep_large_blocks``, the pretraining YAMLs): the opposite, no
  block is ever mapped and the heap is never trimmed on a free. glibc maps every block above
  32 MiB (its threshold's ceiling) and unmaps it when freed, so each step faults in its largest
  activations afresh: a tiny aqc2 step (8 x 4 s, bf16) took 41,000 page faults and 69 ms of
  system time, every one of them gone when freed blocks stay in the heap for the next step.
  The periodic ``malloc_trim(0)`` still hands free pages back.

Measured in ``benchmarks/results/finetune_rss.md`` and ``benchmarks/results/pretrain_step.md``.
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_MMAP_MAX_`` or ``MALLOC_TRIM_THRESHOLD_`` set by the user win
over the settings here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

# mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``malloc_trim``), else None (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim"):
        return None
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def fix_mmap_threshold(threshold: int) -> bool:
    """Map allocations of at least ``threshold`` bytes (glibc's threshold then stops moving);
    True when it was set.

    Does nothing where the C library is not glibc or the user set ``MALLOC_MMAP_THRESHOLD_``.
    """
    libc = _glibc()
    if libc is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(threshold)))


def keep_freed_blocks_in_heap() -> bool:
    """Serve every block from the heap and never trim it on a free (glibc ``M_MMAP_MAX`` 0,
    ``M_TRIM_THRESHOLD`` at its maximum); True when set.

    A freed block of activations is then reused by the next step instead of being unmapped and
    faulted in again page by page; only :func:`release_free_heap` gives memory back. Does
    nothing where the C library is not glibc or the user set a ``MALLOC_*`` mmap or trim
    variable.
    """
    libc = _glibc()
    if libc is None or any(name in os.environ for name in _USER_SETTINGS):
        return False
    no_mmap = libc.mallopt(ctypes.c_int(_M_MMAP_MAX), ctypes.c_int(0))
    # the trim threshold is an unsigned size in glibc: -1 is its largest value
    no_trim = libc.mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(-1))
    return bool(no_mmap and no_trim)


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; True when glibc released any memory."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class HeapReleaser:
    """Calls :func:`release_free_heap` at every ``interval``-th :meth:`tick` (one per batch);
    with ``mmap_threshold_mib`` > 0 it first pins glibc's mmap threshold there, with
    ``keep_large_blocks`` it first calls :func:`keep_freed_blocks_in_heap` (one of the two at most).

    A release costs a walk over the heap's free chunks (about a millisecond at these sizes)
    and the page faults of reusing what it gave back, small beside a tiny model's step of a few
    hundred milliseconds when it comes once in 20 batches.
    """

    def __init__(
        self, interval: int = 20, mmap_threshold_mib: float = 0, keep_large_blocks: bool = False
    ):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if mmap_threshold_mib < 0:
            raise ValueError(f"mmap_threshold_mib must be >= 0, got {mmap_threshold_mib}")
        if keep_large_blocks and mmap_threshold_mib > 0:
            raise ValueError(
                "keep_large_blocks (no block mapped) contradicts an mmap threshold "
                f"({mmap_threshold_mib} MiB): choose one"
            )
        self.interval = interval
        self.ticks = 0
        if mmap_threshold_mib > 0:
            fix_mmap_threshold(int(mmap_threshold_mib * 1024 * 1024))
        if keep_large_blocks:
            keep_freed_blocks_in_heap()

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % self.interval == 0:
            release_free_heap()
