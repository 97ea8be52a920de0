"""d2v_speech.heap against the kernel's own accounting of the process's resident memory."""

import os
import subprocess
import sys

import pytest

from d2v_speech import heap

FRAGMENTATION_PROBE = """
import ctypes
from pathlib import Path
from d2v_speech import heap

def resident_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
heap.fix_mmap_threshold(4 << 20)  # blocks under 4 MiB come from the heap
heap.release_free_heap()
before = resident_mib()
blocks = []
for _ in range(100):
    blocks.append(libc.malloc(1 << 20))  # 1 MiB each, touched as a tensor's storage is
    ctypes.memset(blocks[-1], 1, 1 << 20)
for block in blocks[::2]:
    libc.free(block)  # every other block: holes between live blocks, none at the heap's top
grown = resident_mib() - before
assert heap.release_free_heap()
print(grown, before + grown - resident_mib())
"""


@pytest.mark.skipif(heap._glibc() is None, reason="the C library has no malloc_trim")
def test_release_returns_fragmented_free_memory_to_the_os():
    # every other block freed (raw malloc: nothing else lands between them): holes between live
    # blocks, the pattern that keeps glibc from trimming the heap on its own
    output = subprocess.run(
        [sys.executable, "-c", FRAGMENTATION_PROBE], capture_output=True, text=True, check=True
    ).stdout
    grown, released = (float(value) for value in output.split())
    assert grown > 90, f"100 blocks of 1 MiB grew the RSS by only {grown:.0f} MiB"
    assert released > 45, f"released {released:.0f} MiB of the 50 MiB freed"


def test_releaser_releases_at_every_interval_th_tick(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "release_free_heap", lambda: calls.append(1))
    releaser = heap.HeapReleaser(interval=3)
    for _ in range(10):
        releaser.tick()
    assert len(calls) == 3
    with pytest.raises(ValueError, match="interval"):
        heap.HeapReleaser(interval=0)
    with pytest.raises(ValueError, match="mmap_threshold_mib"):
        heap.HeapReleaser(mmap_threshold_mib=-1)


RETAINED_PROBE = """
import sys, torch
from pathlib import Path
from d2v_speech import heap

def resident_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[1] == "fixed":
    heap.HeapReleaser(mmap_threshold_mib=4)  # as a recipe with heap_mmap_threshold_mib: 4
kept = []
for size in range(3):
    block = torch.ones(4 * 1024 * 1024 + size)  # 16 MiB, each a little different
    kept.append(torch.ones(1000))  # a small block above it pins the top of the heap
    if size == 2:
        before = resident_mib() - 16
    del block
print(resident_mib() - before)
"""


@pytest.mark.skipif(heap._glibc() is None, reason="the C library is not glibc")
@pytest.mark.parametrize("mode, retained", [("default", True), ("fixed", False)])
def test_a_fixed_mmap_threshold_returns_large_blocks_when_they_are_freed(mode, retained):
    # by default glibc raises its mmap threshold to each freed block's size, so the next 16 MiB
    # block comes from the heap and stays resident after it is freed; a fixed threshold maps it
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    output = subprocess.run(
        [sys.executable, "-c", RETAINED_PROBE, mode],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    assert (float(output) > 12) == retained, f"{mode}: {float(output):.1f} MiB still resident"


REUSE_PROBE = """
import resource, sys, torch
from pathlib import Path
from d2v_speech import heap

def resident_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

if sys.argv[1] == "keep":
    assert heap.HeapReleaser(keep_large_blocks=True)  # as a YAML with heap_keep_large_blocks
size = 16 * 1024 * 1024  # 64 MiB of float32: above glibc's 32 MiB mmap ceiling
for _ in range(8):  # steps: the heap settles (with alignment slack, a freed block of exactly
    block = torch.ones(size)  # the size is reused once its neighbours are free too)
    before = resident_mib()
    del block
kept_after_free = resident_mib() - before + 64
start = faults()
block = torch.ones(size)  # the next step's activations, same size
refaults = faults() - start
del block
heap.release_free_heap()
kept_after_release = resident_mib() - before + 64
print(kept_after_free, refaults, kept_after_release)
"""


@pytest.mark.skipif(heap._glibc() is None, reason="the C library is not glibc")
@pytest.mark.parametrize("mode", ["default", "keep"])
def test_kept_blocks_are_reused_without_page_faults_until_released(mode):
    # glibc maps a 64 MiB block and unmaps it on free, so the next one faults in its 16384 pages
    # again; kept in the heap it is reused as is, and release_free_heap still hands it back
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    output = subprocess.run(
        [sys.executable, "-c", REUSE_PROBE, mode],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    kept_after_free, refaults, kept_after_release = (float(v) for v in output.split())
    pages = 64 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    if mode == "keep":
        assert kept_after_free > 60, f"only {kept_after_free:.0f} MiB kept after the free"
        assert refaults < pages / 16, f"{refaults:.0f} page faults reusing a kept block"
    else:
        assert kept_after_free < 4, f"{kept_after_free:.0f} MiB still resident after the free"
        assert refaults > pages / 2, f"only {refaults:.0f} page faults for a fresh 64 MiB block"
    assert kept_after_release < 4, f"{kept_after_release:.0f} MiB still resident after release"


def test_keep_large_blocks_contradicts_an_mmap_threshold():
    with pytest.raises(ValueError, match="contradicts"):
        heap.HeapReleaser(mmap_threshold_mib=4, keep_large_blocks=True)
