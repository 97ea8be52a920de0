"""Resident memory of a tiny fine-tuning run over its updates (issue 19: under 3 GB over 2,000).

Runs ``recipes/LibriSpeech/finetune.py`` (or watches one already running, ``--attach PID``) and
samples, every ``--interval`` seconds, the resident set of the recipe's process and of its
DataLoader workers (``/proc/PID/status``), next to the update the run has reached (its
``train_steps.jsonl``). The report gives the peak, the RSS at update milestones and the growth
between the first milestone and the last, per labelled arm, so allocator or batching settings can
be compared as arms:

    python benchmarks/finetune_rss.py --label default -- \\
        hparams/tiny/finetune_ctc.yaml --pretrained=none --train_split=1h
    MALLOC_ARENA_MAX=2 python benchmarks/finetune_rss.py --label arena2 -- ...
    python benchmarks/finetune_rss.py --label grid-job --attach 12345 --folder results/.../1h/1

Results: ``benchmarks/results/finetune_rss.json`` (all arms, with their samples) and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MILESTONES = (100, 500, 1000, 1500, 2000)
TARGET_MIB = 3 * 1024


def status_kib(pid: int, field: str, table: str = "status") -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``) or of /proc/PID/smaps_rollup
    (``table="smaps_rollup"``: ``Pss``, ``Private_Dirty``); 0 once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/{table}").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process so far (/proc/PID/stat); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the DataLoader workers of a recipe)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def last_update(folder: Path) -> int:
    """The newest ``update`` in the run's train_steps.jsonl (0 before the first record)."""
    path = folder / "train_steps.jsonl"
    if not path.exists():
        return 0
    update = 0
    for line in path.read_text().splitlines():
        try:
            update = max(update, int(json.loads(line).get("update", 0)))
        except (ValueError, json.JSONDecodeError):
            continue  # a line being written
    return update


def sample(pid: int, folder: Path, start: float) -> dict:
    """One sample: seconds since start, update, the main process's RSS and peak RSS, and the
    proportional set size (PSS: shared pages split between the processes sharing them) of the
    main process and of its workers, in MiB. Forked workers share the parent's pages until they
    write to them, so their RSS would count those twice; their PSS does not."""
    workers = children(pid)
    return {
        "seconds": round(time.time() - start, 1),
        "update": last_update(folder),
        "cpu_seconds": cpu_seconds(pid),
        "main_rss_mib": status_kib(pid, "VmRSS") / 1024,
        "main_peak_mib": status_kib(pid, "VmHWM") / 1024,
        "main_pss_mib": status_kib(pid, "Pss", "smaps_rollup") / 1024,
        "workers_pss_mib": sum(status_kib(w, "Pss", "smaps_rollup") for w in workers) / 1024,
    }


def watch(pid: int, folder: Path, interval: float, alive) -> list[dict]:
    """Samples until ``alive()`` is False; prints one progress line a minute."""
    start, samples, shown = time.time(), [], 0.0
    while alive():
        samples.append(sample(pid, folder, start))
        if samples[-1]["seconds"] - shown >= 60:
            shown = samples[-1]["seconds"]
            s = samples[-1]
            print(f"{s['seconds']:.0f} s, update {s['update']}: RSS {s['main_rss_mib']:.0f} MiB,"
                  f" PSS {s['main_pss_mib']:.0f} + workers {s['workers_pss_mib']:.0f} MiB",
                  flush=True)  # fmt: skip
        time.sleep(interval)
    return [s for s in samples if s["main_rss_mib"] > 0]


def summarise(samples: list[dict]) -> dict:
    """Peak total RSS, RSS at each milestone reached, growth from the first milestone to the end."""
    total = [s["main_pss_mib"] + s["workers_pss_mib"] for s in samples]
    at = {}
    for milestone in MILESTONES:
        reached = [s for s in samples if s["update"] >= milestone]
        if reached:
            at[str(milestone)] = round(reached[0]["main_rss_mib"], 1)
    training = [s for s in samples if s["update"] >= MILESTONES[0]]
    last_training = max((s["update"] for s in samples), default=0)
    in_training = [s for s in training if s["update"] < last_training] or training
    return {
        "peak_total_pss_mib": round(max(total, default=0.0), 1),
        "peak_main_rss_mib": round(max((s["main_peak_mib"] for s in samples), default=0.0), 1),
        "main_rss_at_update_mib": at,
        "growth_during_training_mib": (
            round(in_training[-1]["main_rss_mib"] - in_training[0]["main_rss_mib"], 1)
            if in_training
            else None
        ),
        "updates": last_training,
        "cpu_seconds_per_update": _cpu_per_update(in_training),
        "under_target": max(total, default=0.0) < TARGET_MIB,
    }


def _cpu_per_update(samples: list[dict]) -> float | None:
    """CPU seconds of the main process per update between the first and the last sample."""
    if len(samples) < 2 or samples[-1]["update"] <= samples[0]["update"]:
        return None
    spent = samples[-1]["cpu_seconds"] - samples[0]["cpu_seconds"]
    return round(spent / (samples[-1]["update"] - samples[0]["update"]), 4)


def write_report(results: dict) -> None:
    """JSON with every arm's samples and a markdown table of the summaries."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "finetune_rss.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# Fine-tuning resident memory",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M')} by `benchmarks/finetune_rss.py`; machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs. RSS of the recipe's process, and "
        "the PSS (shared pages split between sharers) of it and its DataLoader workers together, "
        "sampled while it runs; target: under 3 GiB over 2,000 "
        "updates (issue 19). Arms differ in the environment or arguments shown. CPU s per update: "
        "the main process from update 100 to the end, validation included; compare it only "
        "between arms that ran side by side.",
        "",
        "| arm | command / environment | updates | peak PSS, main + workers (MiB) | "
        + " | ".join(f"main RSS at update {m} (MiB)" for m in MILESTONES)
        + " | growth in training (MiB) | CPU s per update | under 3 GiB |",
        "|---|---|---|---|" + "---|" * len(MILESTONES) + "---|---|---|",
    ]
    for label, arm in results["arms"].items():
        s = arm["summary"]
        at = [str(s["main_rss_at_update_mib"].get(str(m), "-")) for m in MILESTONES]
        lines.append(
            f"| {label} | `{arm['how']}` | {s['updates']} | {s['peak_total_pss_mib']} | "
            + " | ".join(at)
            + f" | {s['growth_during_training_mib']} | {s.get('cpu_seconds_per_update')} | "
            + f"{'yes' if s['under_target'] else 'no'} |"
        )
    (RESULTS / "finetune_rss.md").write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="name of this arm in the report")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--attach", type=int, help="watch this running recipe process instead")
    parser.add_argument("--folder", type=Path, help="the run's output folder (with --attach)")
    parser.add_argument("--output_folder", type=Path, default=ROOT / "results" / "finetune_rss")
    parser.add_argument("recipe_args", nargs="*", help="after --: the recipe's arguments")
    args = parser.parse_args(argv)
    if args.attach is None and not args.recipe_args:
        parser.error("give the recipe's arguments after --, or --attach PID --folder DIR")
    if args.attach is not None and args.folder is None:
        parser.error("--attach needs --folder, the run's output folder")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.attach is not None:
        pid, folder = args.attach, args.folder
        how = f"attached to pid {pid} ({folder})"
        samples = watch(pid, folder, args.interval, lambda: Path(f"/proc/{pid}").exists())
    else:
        folder = args.output_folder / re.sub(r"[^A-Za-z0-9._-]+", "_", args.label)
        command = [sys.executable, str(ROOT / "recipes" / "LibriSpeech" / "finetune.py"),
                   *args.recipe_args, f"--output_folder={folder}"]  # fmt: skip
        settings = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "LD_PRELOAD",
                    "OMP_NUM", "ONEDNN", "DNNL"))}  # fmt: skip
        how = " ".join([*(f"{k}={v}" for k, v in sorted(settings.items())), *args.recipe_args])
        process = subprocess.Popen(command, cwd=ROOT)
        samples = watch(process.pid, folder, args.interval, lambda: process.poll() is None)
        if process.returncode != 0:
            raise SystemExit(f"the run failed (exit {process.returncode}); see {folder}")
    path = RESULTS / "finetune_rss.json"
    results = json.loads(path.read_text()) if path.exists() else {"arms": {}}
    results["arms"][args.label] = {"how": how, "summary": summarise(samples), "samples": samples}
    write_report(results)
    print(json.dumps(results["arms"][args.label]["summary"], indent=1))


if __name__ == "__main__":
    main()
