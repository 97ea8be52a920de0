"""frame_std against numpy (also across 2 gloo ranks) and CollapseMonitor behaviour."""

import logging
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from d2v_speech.ssl.monitors import CollapseMonitor, frame_std


def numpy_frame_std(x):
    return float(np.mean(np.sqrt(np.var(np.asarray(x, dtype=np.float64), axis=0, ddof=1) + 1e-6)))


def test_frame_std_matches_numpy():
    torch.manual_seed(0)
    x = torch.randn(50, 8) * torch.linspace(0.1, 3, 8) + 5
    assert frame_std(x).item() == pytest.approx(numpy_frame_std(x.numpy()), rel=1e-6)
    constant = torch.ones(10, 4)
    assert frame_std(constant).item() == pytest.approx(1e-3, rel=1e-6)
    assert math.isnan(frame_std(torch.ones(1, 4)).item())


def _rank_worker(rank, init_file, shards, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results[rank] = frame_std(torch.from_numpy(shards[rank])).item()
    finally:
        dist.destroy_process_group()


def test_frame_std_is_global_across_ranks(tmp_path):
    rng = np.random.default_rng(1)
    shards = [rng.normal(size=(30, 4)), rng.normal(loc=2.0, size=(10, 4))]
    results = mp.Manager().dict()
    store = str(tmp_path / "store")
    # fork: children reuse the imported torch instead of paying a fresh import each
    mp.start_processes(_rank_worker, args=(store, shards, results), nprocs=2, start_method="fork")
    expected = numpy_frame_std(np.concatenate(shards))
    assert results[0] == pytest.approx(expected, rel=1e-5)
    assert results[1] == pytest.approx(expected, rel=1e-5)


def test_monitor_waits_for_start_step_then_warns(caplog):
    monitor = CollapseMonitor(start_step=100, action="warn")
    collapsed = {"target_var": 0.01, "pred_var": 0.5, "cnn_std": torch.tensor(0.5)}
    assert monitor.check(99, collapsed) == []
    with caplog.at_level(logging.WARNING, logger="d2v_speech.ssl.monitors"):
        problems = monitor.check(100, collapsed)
    assert problems == ["target_var = 0.01 < 0.1"]
    assert "collapse at step 100" in caplog.text


def test_monitor_aborts_after_patience_and_resets_on_healthy_step():
    monitor = CollapseMonitor(start_step=0, action="abort", patience=2)
    bad = {"target_var": 1.0, "pred_var": 0.001, "cnn_std": 1.0}
    healthy = {"target_var": 1.0, "pred_var": 1.0, "cnn_std": 1.0}
    assert monitor.check(1, bad)
    assert monitor.check(2, healthy) == []
    assert monitor.check(3, bad)
    with pytest.raises(RuntimeError, match="pred_var .*learning rate.*EMA"):
        monitor.check(4, bad)


def test_monitor_watches_cnn_std_and_skips_nan_or_disabled():
    monitor = CollapseMonitor(min_pred_var=None, min_cnn_std=0.05, start_step=0, action="abort")
    assert monitor.check(0, {"pred_var": 0.0, "target_var": float("nan")}) == []
    with pytest.raises(RuntimeError, match="cnn_std"):
        monitor.check(1, {"cnn_std": 0.001})
    with pytest.raises(ValueError, match="action"):
        CollapseMonitor(action="stop")
