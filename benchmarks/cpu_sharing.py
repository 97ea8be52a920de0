"""Runs that share a machine: updates per second of tiny pretraining steps alone and beside
another job, under OpenMP's default (spinning) wait policy and under ``OMP_WAIT_POLICY=PASSIVE``.

Each scenario starts fresh worker processes (one objective each, the setting of
``benchmarks/pretrain_step.py``: tiny data2vec2, 8 x 4 s, bf16 where the CPU has it) that step for a
fixed wall time and report their updates per second:

* ``alone_1t``: one 1-thread run;
* ``pair_1t``: two 1-thread runs side by side (each is reported);
* ``alone_2t``: one 2-thread run;
* ``busy_2t``: a 2-thread run beside a busy 1-thread run (the 2-thread one is reported).

The targets of issue 19: each run of ``pair_1t`` keeps at least 0.85x the rate of ``alone_1t``, and
``busy_2t`` is no slower than ``alone_1t``.

    python benchmarks/cpu_sharing.py --seconds 40

Results: ``benchmarks/results/cpu_sharing.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# OpenMP settings compared: the runtime's default (spin, then sleep), PASSIVE (sleep at once),
# and libgomp's spin count cut to 10,000 iterations (a short spin, then sleep)
POLICIES = {
    "default": {},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
}
# scenario -> thread counts of its workers; the first worker is the one reported (both for pairs)
SCENARIOS = {
    "alone_1t": (1,),
    "pair_1t": (1, 1),
    "alone_2t": (2,),
    "busy_2t": (2, 1),
}


def worker(args: argparse.Namespace) -> None:
    """Step one objective for ``args.seconds`` of wall time; print JSON with updates per second."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from pretrain_step import build_arm, make_batch, parse_args as step_args, train_step

    step = step_args(
        ["--model", "tiny", "--precision", args.precision, "--arms", "data2vec", args.arm]
    )
    device = torch.device("cpu")
    arm = build_arm(args.arm, step, device)
    batch = make_batch(step, device)
    train_step(arm, batch, step, device)  # warm-up: kernels built, memory allocated
    started, updates = time.perf_counter(), 0
    while time.perf_counter() - started < args.seconds:
        train_step(arm, batch, step, device)
        updates += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"updates_per_second": updates / elapsed, "threads": torch.get_num_threads()}))


def run_scenario(threads: tuple[int, ...], policy: str, args: argparse.Namespace) -> list[float]:
    """Updates per second of each worker of one scenario (the busy worker runs a little longer,
    so the reported one never runs alone)."""
    processes = []
    for index, count in enumerate(threads):
        env = {**os.environ, "OMP_NUM_THREADS": str(count), "MKL_NUM_THREADS": str(count)}
        for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
            env.pop(name, None)
        env.update(POLICIES[policy])
        seconds = args.seconds + (15 if index > 0 and len(set(threads)) > 1 else 0)
        command = [sys.executable, __file__, "--worker", "--seconds", str(seconds),
                   "--arm", args.arm, "--precision", args.precision]  # fmt: skip
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
    rates = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"worker failed ({process.returncode}): {out}")
        rates.append(json.loads(out.strip().splitlines()[-1])["updates_per_second"])
    return rates


def markdown(result: dict) -> str:
    lines = [
        "# Runs that share a machine",
        "",
        f"Written by `benchmarks/cpu_sharing.py` on {result['date']}; {result['machine']}; tiny "
        f"{result['arm']}, 8 x 4 s, {result['precision']}, {result['seconds']} s per worker. "
        "Updates per second (ratio to one 1-thread run alone under the same policy).",
        "",
        "| OpenMP setting | alone, 1 thread | two 1-thread runs side by side (each) | alone, "
        "2 threads | 2 threads beside a busy 1-thread job |",
        "|---|---|---|---|---|",
    ]
    for policy, rates in result["policies"].items():
        base = rates["alone_1t"][0]

        def cell(values, base=base):
            return ", ".join(f"{v:.3f} (x{v / base:.2f})" for v in values)

        lines.append(
            f"| {policy} | {cell(rates['alone_1t'])} | {cell(rates['pair_1t'])} | "
            f"{cell(rates['alone_2t'])} | {cell(rates['busy_2t'][:1])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="timed wall seconds per worker")
    parser.add_argument("--arm", default="data2vec2")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "arm": args.arm,
        "precision": args.precision,
        "seconds": args.seconds,
        "policies": {},
    }
    for policy in args.policies:
        result["policies"][policy] = {}
        for name, threads in SCENARIOS.items():
            rates = run_scenario(threads, policy, args)
            result["policies"][policy][name] = rates if name == "pair_1t" else rates[:1]
            print(f"{policy:>8} {name:<9} " + " ".join(f"{r:.3f}" for r in rates), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "cpu_sharing.json"
    if previous.exists():  # keep the policies measured before under the same setting
        old = json.loads(previous.read_text())
        if all(old.get(k) == result[k] for k in ("arm", "precision", "seconds", "machine")):
            result["policies"] = {**old["policies"], **result["policies"]}
    (RESULTS / "cpu_sharing.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "cpu_sharing.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
