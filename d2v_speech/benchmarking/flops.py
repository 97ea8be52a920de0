"""How close a training step comes to the machine: FLOPs of a step and a GEMM peak measured here.

``count_flops`` counts the floating-point operations of a callable with PyTorch's own
``FlopCounterMode`` (matrix products, convolutions and attention, forward and backward; the
element-wise ops are not counted, as in the usual MFU definition). ``gemm_peak_gflops`` measures
what this CPU reaches on plain matrix products of the model's own shapes (tokens x width x
width, tokens x width x FFN, tokens x FFN x width) at one precision, in CPU seconds, and returns
the best: a step's GFLOP/s over it is its fraction of an attainable peak, not of a datasheet's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "gemm_peak_gflops", "model_gemm_shapes"]


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (forward and backward if it runs both)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def model_gemm_shapes(tokens: int, width: int, ffn: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of a Transformer layer's products: projections and both FFN matrices."""
    return [(tokens, width, width), (tokens, width, ffn), (tokens, ffn, width)]


def gemm_peak_gflops(
    shapes: Iterable[tuple[int, int, int]],
    dtype: torch.dtype = torch.float32,
    min_seconds: float = 0.3,
) -> dict[str, float]:
    """Best GFLOP/s (CPU seconds of this process) of ``torch.mm`` over ``shapes``.

    Returns ``{"peak_gflops": best, "M x K x N": gflops, ...}``; each shape runs for at least
    ``min_seconds`` of CPU time after one warm-up product.
    """
    results: dict[str, float] = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        torch.mm(a, b)
        repeats, start = 0, time.process_time()
        while time.process_time() - start < min_seconds or repeats < 3:
            torch.mm(a, b)
            repeats += 1
        seconds = time.process_time() - start
        results[f"{m} x {k} x {n}"] = 2.0 * m * k * n * repeats / seconds / 1e9
    results["peak_gflops"] = max(results.values())
    return results
