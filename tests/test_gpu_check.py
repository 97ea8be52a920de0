"""benchmarks/gpu_check.py in dry mode: every section runs on the CPU and lands in the report."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_dry_run_checks_its_own_plumbing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    sections = ["gemm_peak", "steps", "fp16", "kmeans", "torchrun"]  # cuda_tests: pytest in pytest
    argv = ["--dry", "--repeats", "1", "--out", str(tmp_path), "--sections", *sections]
    assert gpu_check.main(argv) == 0
    report = json.loads((tmp_path / "gpu_check_dry.json").read_text())
    assert report["dry"] and list(report["sections"]) == sections
    assert all(section["ok"] for section in report["sections"].values())
    steps = report["sections"]["steps"]["arms"]
    assert set(steps) == {"data2vec", "aqc", "data2vec2", "aqc2"}
    # FLOPs come from torch's counter: the 2.0 engine encodes 8 clones, so it does more work
    assert steps["data2vec2"]["tflop_per_update"] > steps["data2vec"]["tflop_per_update"] > 0
    assert report["sections"]["torchrun"]["backend"] == "gloo"
    assert "| steps | yes |" in (tmp_path / "gpu_check_dry.md").read_text()
    sys.modules.pop("gpu_check", None)
