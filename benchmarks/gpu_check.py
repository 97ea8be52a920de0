"""The GPU check in one call (issue 20): what a machine with a GPU runs as is, in under 8 minutes.

Sections, each timed and recorded; one that fails is written down and the others go on:

* ``cuda_tests``: the test suite's tests marked ``cuda`` (``pytest -m cuda``);
* ``gemm_peak``: fp32 and bf16 matrix-multiply throughput at the model's largest matrix shapes
  and at a square 8192 (the peak the MFU is measured against);
* ``steps``: a BASE data2vec, data2vec-aqc, data2vec2 and aqc2 update at bf16
  (``pretrain_step.py``'s objectives and batch): median seconds, FLOPs per update counted by
  ``torch.utils.flop_counter``, MFU against the measured bf16 peak, peak memory;
* ``fp16``: the data2vec update under fp16 autocast with the gradient scaler: finite losses;
* ``kmeans``: cosine k-means at data2vec-aqc's BASE sizes, torch on the device vs faiss (on the
  GPU when faiss-gpu is installed: ``requirements-cuda.txt``);
* ``torchrun``: a 1-process ``torchrun --standalone`` start-up with NCCL (gloo on CPU): process
  group, a DDP-wrapped layer, one all-reduced backward.

``--dry`` runs every section on the CPU with the tiny model and small shapes, to check the
script's own plumbing on a machine without a GPU (a test does that). Results:
``benchmarks/results/gpu_check.json`` and ``gpu_check.md`` (``gpu_check_dry.*`` in dry mode).

    bash benchmarks/gpu_check.sh            # on the GPU machine
    bash benchmarks/gpu_check.sh --dry      # plumbing check on any machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

STEP_ARMS = ("data2vec", "aqc", "data2vec2", "aqc2")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls after one untimed warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------ sections
def cuda_tests(args: argparse.Namespace, device: torch.device) -> dict:
    """``pytest -m cuda``; in dry mode only collect them (they skip without a GPU)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda"]
    if args.dry:
        command.append("--collect-only")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    tail = done.stdout.strip().splitlines()[-1:] or [done.stderr.strip()[-200:]]
    # exit 5: nothing collected, which is a valid answer for a selection
    return {
        "command": " ".join(command[2:]),
        "exit": done.returncode,
        "summary": tail[0],
        "ok": done.returncode in (0, 5),
    }


def gemm_peak(args: argparse.Namespace, device: torch.device) -> dict:
    """TFLOP/s of ``A @ B`` per precision and shape (M, K, N); the best bf16 figure is the peak."""
    from d2v_speech.nn.presets import load_model_config

    config = load_model_config(args.model)
    tokens = args.batch * int(args.seconds * 50)  # frames at 50 Hz
    shapes = [
        (tokens, config.embed_dim, config.ffn_dim),
        (tokens, config.ffn_dim, config.embed_dim),
    ]
    shapes.append((256, 256, 256) if args.dry else (8192, 8192, 8192))
    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for m, k, n in shapes:
            a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            seconds = statistics.median(timed(lambda a=a, b=b: a @ b, device, args.repeats))
            results[f"{name} {m}x{k}x{n}"] = round(2 * m * k * n / seconds / 1e12, 3)
    peak = max(v for key, v in results.items() if key.startswith("bf16"))
    return {"tflops": results, "bf16_peak_tflops": peak, "ok": True}


def _step_args(args: argparse.Namespace, arm: str, precision: str) -> argparse.Namespace:
    from pretrain_step import parse_args as step_args

    return step_args(
        [
            "--model",
            args.model,
            "--batch",
            str(args.batch),
            "--seconds",
            str(args.seconds),
            "--precision",
            precision,
            "--device",
            args.device_type,
            "--arms",
            "data2vec",
            arm,
        ]
    )


def steps(args: argparse.Namespace, device: torch.device, peak_tflops: float | None) -> dict:
    """Per arm: median update seconds, FLOPs per update, MFU against the bf16 peak, peak memory."""
    from pretrain_step import build_arm, make_batch, train_step
    from torch.utils.flop_counter import FlopCounterMode

    precision = "fp32" if args.dry else "bf16"
    results = {}
    for name in STEP_ARMS:
        step = _step_args(args, name, precision)
        arm = build_arm(name, step, device)
        batch = make_batch(step, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = statistics.median(
            timed(lambda a=arm, x=batch, s=step: train_step(a, x, s, device), device, args.repeats)
        )
        counter = FlopCounterMode(display=False)
        with counter:
            train_step(arm, batch, step, device)
        flops = counter.get_total_flops()
        entry = {"seconds": round(seconds, 4), "tflop_per_update": round(flops / 1e12, 4)}
        if peak_tflops:
            entry["mfu_percent"] = round(100 * flops / seconds / 1e12 / peak_tflops, 1)
        if device.type == "cuda":
            entry["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        results[name] = entry
    return {"precision": precision, "arms": results, "ok": True}


def fp16(args: argparse.Namespace, device: torch.device) -> dict:
    """data2vec updates under fp16 autocast with the gradient scaler."""
    from pretrain_step import build_arm, make_batch, train_step

    step = _step_args(args, "data2vec", "fp16")
    arm = build_arm("data2vec", step, device)
    batch = make_batch(step, device)
    losses = []
    for _ in range(args.repeats + 1):
        train_step(arm, batch, step, device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16):
            layer_keep = torch.ones(arm.objective.model.config.num_layers, dtype=torch.bool)
            losses.append(
                float(arm.objective(batch["wav"], batch["lengths"], layer_keep=layer_keep)["loss"])
            )
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    return {"losses": [round(x, 4) for x in losses], "scale": arm.scaler.get_scale(), "ok": finite}


def kmeans(args: argparse.Namespace, device: torch.device) -> dict:
    """Seconds of cosine k-means (20 iterations) on the device with torch and with faiss."""
    import faiss

    from d2v_speech.ssl.kmeans import cosine_kmeans

    num_points, clusters = (1600, 12) if args.dry else (2 * 60 * 250, 62)
    x = torch.randn(num_points, 256, device=device)
    results = {
        "points": num_points,
        "clusters": clusters,
        "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
    }
    for backend in ("torch", "faiss"):
        seconds = timed(lambda b=backend: cosine_kmeans(x, clusters, 20, backend=b), device, 2)
        results[f"{backend}_seconds"] = round(statistics.median(seconds), 4)
    results["ok"] = True
    return results


DDP_PROBE = """
import os, time, torch, torch.distributed as dist
backend = "nccl" if torch.cuda.is_available() else "gloo"
start = time.perf_counter()
dist.init_process_group(backend)
rank = int(os.environ["LOCAL_RANK"])
device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
layer = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(64, 64).to(device))
layer(torch.randn(8, 64, device=device)).sum().backward()
dist.barrier()
print(backend, round(time.perf_counter() - start, 3), flush=True)
dist.destroy_process_group()
"""


def torchrun(args: argparse.Namespace, device: torch.device) -> dict:
    """A 1-process ``torchrun --standalone`` run: process group, DDP, one backward."""
    probe = args.out / ".ddp_probe.py"
    probe.write_text(DDP_PROBE)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        str(probe),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    probe.unlink(missing_ok=True)
    words = (done.stdout.strip().splitlines() or [""])[-1].split()
    return {
        "exit": done.returncode,
        "backend": words[0] if words else None,
        "init_to_backward_seconds": float(words[1]) if len(words) > 1 else None,
        "total_seconds": round(time.perf_counter() - start, 2),
        "ok": done.returncode == 0,
        "stderr_tail": done.stderr.strip()[-300:],
    }


# ------------------------------------------------------------------------------ report
def markdown(report: dict) -> str:
    lines = [
        f"# GPU check{' (dry run on CPU: plumbing only)' if report['dry'] else ''}",
        "",
        f"Written {report['written']} by `benchmarks/gpu_check.py`; device: {report['device']};"
        f" torch {report['torch']}; {report['total_seconds']:.0f} s in all.",
        "",
        "| section | ok | seconds | result |",
        "|---|---|---|---|",
    ]
    for name, section in report["sections"].items():
        shown = {k: v for k, v in section.items() if k not in ("ok", "seconds", "traceback")}
        lines.append(
            f"| {name} | {'yes' if section.get('ok') else 'NO'} | "
            f"{section.get('seconds', 0):.1f} | `{json.dumps(shown)[:400]}` |"
        )
    steps_section = report["sections"].get("steps", {})
    if steps_section.get("arms"):
        lines += [
            "",
            f"Updates ({steps_section['precision']}):",
            "",
            "| arm | seconds | TFLOP per update | MFU % | peak memory GiB |",
            "|---|---|---|---|---|",
        ]
        for arm, entry in steps_section["arms"].items():
            lines.append(
                f"| {arm} | {entry['seconds']} | {entry['tflop_per_update']} | "
                f"{entry.get('mfu_percent', '-')} | {entry.get('peak_memory_gib', '-')} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny model, small shapes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and markdown")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["cuda_tests", "gemm_peak", "steps", "fp16", "kmeans", "torchrun"],
    )
    args = parser.parse_args(argv)
    args.model, args.batch, args.seconds = ("tiny", 2, 2.0) if args.dry else ("base", 4, 15.0)
    args.device_type = "cpu" if args.dry else "cuda"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        print("no CUDA device here: run with --dry to check the plumbing", file=sys.stderr)
        return 2
    device = torch.device(args.device_type)
    args.out.mkdir(parents=True, exist_ok=True)
    started, sections, peak = time.perf_counter(), {}, None
    for name in args.sections:
        begin = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            function = {
                "cuda_tests": cuda_tests,
                "gemm_peak": gemm_peak,
                "fp16": fp16,
                "kmeans": kmeans,
                "torchrun": torchrun,
            }.get(name)
            result = steps(args, device, peak) if name == "steps" else function(args, device)
            peak = result.get("bf16_peak_tflops", peak)
        except Exception as error:  # a failed section is a result; the others still run
            result = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-2000:],
            }
        result["seconds"] = round(time.perf_counter() - begin, 1)
        sections[name] = result
        print(json.dumps({k: v for k, v in result.items() if k != "traceback"})[:600], flush=True)
    report = {
        "dry": args.dry,
        "written": time.strftime("%Y-%m-%d %H:%M"),
        "device": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "torch": torch.__version__,
        "total_seconds": round(time.perf_counter() - started, 1),
        "sections": sections,
    }
    stem = "gpu_check_dry" if args.dry else "gpu_check"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    failed = [name for name, section in sections.items() if not section.get("ok")]
    print(f"wrote {args.out / stem}.md; failed sections: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
