"""FLOP counting and the measured GEMM peak against the textbook 2 M K N."""

import torch

from d2v_speech.benchmarking.flops import count_flops, gemm_peak_gflops, model_gemm_shapes


def test_count_flops_is_2mkn_per_product_and_triples_with_backward():
    a = torch.randn(64, 32, requires_grad=True)
    b = torch.randn(32, 16, requires_grad=True)
    assert count_flops(lambda: a @ b) == 2 * 64 * 32 * 16
    # backward: one product per input gradient, each as costly as the forward one
    assert count_flops(lambda: (a @ b).sum().backward()) == 3 * 2 * 64 * 32 * 16


def test_gemm_peak_reports_every_shape_and_the_best():
    shapes = model_gemm_shapes(tokens=64, width=32, ffn=128)
    assert shapes == [(64, 32, 32), (64, 32, 128), (64, 128, 32)]
    result = gemm_peak_gflops(shapes, torch.float32, min_seconds=0.01)
    assert set(result) == {"64 x 32 x 32", "64 x 32 x 128", "64 x 128 x 32", "peak_gflops"}
    assert result["peak_gflops"] == max(v for k, v in result.items() if k != "peak_gflops") > 0
