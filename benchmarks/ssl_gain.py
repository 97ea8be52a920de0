"""The SSL-gain benchmark: does pretraining lower the error at a given amount of labelled data,
and does data2vec-aqc lower it more than data2vec (Lodagala et al. report 14.1 % / 20.9 %
relative on test-clean / test-other)?

Arms (``benchmarks/ssl_gain.yaml``): scratch, data2vec, data2vec-aqc and the data2vec 2.0 engine's
data2vec2 and aqc2. Every pretraining arm gets the same CPU-second budget: a short calibration run
of its YAML measures CPU seconds per update and the fixed start-up cost, and the arm's
``optimizer_step_limit`` is set so that the whole run (data loading, augmentation, validation
included) spends the budget; the CPU seconds it really used are reported beside it. Every arm
then gets the same fine-tuning (``finetune_yaml`` at each split's update count) on 10m and 1h,
with several fine-tuning seeds, and is scored greedy and with the 4-gram LM (weights tuned on
dev-clean).

    python benchmarks/ssl_gain.py                       # the whole grid, two jobs side by side
    python benchmarks/ssl_gain.py --arms data2vec2 aqc2 scratch --splits 1h --seeds 1
    python benchmarks/ssl_gain.py --report_only         # tables and plot from what has finished

Jobs run side by side (``--parallel``, one thread each by default) in an order that completes
whole seeds first, so a partial run already compares every arm. Killed at any point, a re-run
skips finished jobs and the recipes resume from their checkpoints. After every job the report is
rewritten: ``benchmarks/results/ssl_gain.json``, ``ssl_gain.md`` and ``ssl_gain_dev_cer.png``
(dev-clean CER after fine-tuning against pretraining CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

import yaml

from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.benchmarking.job_runner import Job, run_jobs
from d2v_speech.benchmarking.seed_statistics import (
    SeedSummary,
    clearly_lower,
    relative_gain,
    summarize,
)
from d2v_speech.training.step_log import JsonLinesLog

logger = logging.getLogger("ssl_gain")

ROOT = Path(__file__).resolve().parent.parent
TEST_SETS = ("test-clean", "test-other")
# (key in a fine-tuning record, label); all are "lower is better"
METRICS = (
    ("cer", "CER %"),
    ("wer_greedy", "greedy WER %"),
    ("wer_4gram", "4-gram WER %"),
    ("nats_per_char", "nats/char"),
)
# the pairs the paper compares: aqc against data2vec on the same engine
AQC_PAIRS = (("aqc", "data2vec"), ("aqc2", "data2vec2"))


# ------------------------------------------------------------------ configuration
def is_scratch(spec: dict | None) -> bool:
    """An arm without a pretraining YAML fine-tunes a randomly initialised encoder."""
    return spec is None or "yaml" not in spec


def finetune_overrides(spec: dict | None) -> list[str]:
    """The arm's own fine-tuning options (for example a scratch arm without the head-only phase)."""
    return [] if spec is None else list(spec.get("finetune_overrides", []))


def load_config(path: Path, args: argparse.Namespace) -> dict:
    """The arms YAML with the command line's choices applied; checks files before any work."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if args.budgets:
        config["pretrain_cpu_seconds"] = args.budgets
    if args.splits:
        config["splits"] = args.splits
    if args.seeds:
        config["finetune_seeds"] = list(range(1, args.seeds + 1))
    arms = config["arms"]
    if args.arms:
        unknown = [name for name in args.arms if name not in arms]
        if unknown:
            raise SystemExit(f"{path}: no arm named {unknown}; arms: {sorted(arms)}")
        config["arms"] = {name: arms[name] for name in args.arms}
    missing = [
        spec["yaml"]
        for spec in config["arms"].values()
        if not is_scratch(spec) and not (ROOT / spec["yaml"]).is_file()
    ]
    if not (ROOT / config["finetune_yaml"]).is_file():
        missing.append(config["finetune_yaml"])
    if not args.no_lm:
        missing += [p for p in (args.lm, args.lexicon) if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"ssl_gain: missing files {missing} (the LM: make lm, or --no_lm)")
    return config


def steps_per_second(step_log: Path) -> tuple[float, float]:
    """(wall seconds per update, last update) from a recipe's train_steps.jsonl, measured
    from the second logged update on (the first includes start-up)."""
    timed = [r for r in JsonLinesLog(str(step_log)).read() if {"time", "update", "loss"} <= set(r)]
    if len(timed) < 3:
        raise RuntimeError(f"{step_log}: too few logged updates to calibrate")
    first, last = timed[1], timed[-1]
    return (last["time"] - first["time"]) / (last["update"] - first["update"]), last["update"]


# ------------------------------------------------------------------------- jobs
class Grid:
    """The benchmark's jobs and where each writes."""

    def __init__(self, config: dict, args: argparse.Namespace) -> None:
        self.config, self.args = config, args
        self.work = Path(args.work_dir)
        self.python = sys.executable

    def recipe(self, name: str) -> str:
        return str(ROOT / "recipes" / "LibriSpeech" / name)

    def pretrain_command(self, spec: dict, updates: int, folder: Path) -> list[str]:
        return [
            self.python,
            self.recipe("pretrain.py"),
            str(ROOT / spec["yaml"]),
            f"--optimizer_step_limit={updates}",
            f"--output_folder={folder}",
            f"--precision={self.args.precision}",
            "--noprogressbar",
            *spec.get("overrides", []),
        ]

    def calibration_job(self, arm: str, spec: dict) -> Job:
        folder = self.work / "calibrate" / arm
        updates = int(self.config["calibration_updates"])

        def commands():
            return [self.pretrain_command(spec, updates, folder)]

        def finish(usages):
            wall_per_update, last = steps_per_second(folder / "train_steps.jsonl")
            usage = usages[0]
            # CPU per update: the steps' wall time scaled by the run's CPU/wall ratio
            cpu_per_update = wall_per_update * usage.cpu_seconds / usage.wall_seconds
            overhead = max(0.0, usage.cpu_seconds - cpu_per_update * last)
            return {"cpu_per_update": cpu_per_update, "overhead_cpu_seconds": overhead}

        return Job(f"calibrate/{arm}", commands, folder / "job.json", folder / "job.log",
                   finish)  # fmt: skip

    def pretrain_folder(self, arm: str, budget: int) -> Path:
        return self.work / "pretrain" / f"{arm}_{budget}"

    def pretrain_job(self, arm: str, spec: dict, budget: int) -> Job:
        folder = self.pretrain_folder(arm, budget)
        calibration = self.work / "calibrate" / arm / "job.json"

        def updates() -> int:
            measured = json.loads(calibration.read_text())
            spend = budget - measured["overhead_cpu_seconds"]
            return max(10, int(spend / measured["cpu_per_update"]))

        def commands():
            return [self.pretrain_command(spec, updates(), folder)]

        def finish(usages):
            return {"arm": arm, "budget": budget, "updates": updates()}

        return Job(f"pretrain/{arm}_{budget}", commands, folder / "job.json",
                   folder / "job.log", finish, after=(f"calibrate/{arm}",))  # fmt: skip

    def encoder_source(self, arm: str, budget: int | None) -> tuple[str, str, tuple[str, ...]]:
        """(tag, --pretrained value, jobs to wait for) of an arm; budget None is scratch."""
        if budget is None:
            return arm, "none", ()
        tag = f"{arm}_{budget}"
        return tag, str(self.pretrain_folder(arm, budget)), (f"pretrain/{tag}",)

    def finetune_job(self, arm: str, budget: int | None, split: str, seed: int) -> Job:
        tag, pretrained, after = self.encoder_source(arm, budget)
        arm_overrides = finetune_overrides(self.config["arms"][arm])
        folder = self.work / "finetune" / tag / split / str(seed)

        def commands():
            finetune = [self.python, self.recipe("finetune.py"),
                        str(ROOT / self.config["finetune_yaml"]), f"--pretrained={pretrained}",
                        f"--train_split={split}", f"--seed={seed}", f"--output_folder={folder}",
                        f"--precision={self.args.precision}", "--noprogressbar",
                        *arm_overrides, *self.args.finetune_overrides]  # fmt: skip
            if self.args.no_lm:
                return [finetune]
            evaluate = [self.python, self.recipe("evaluate.py"), str(folder),
                        "--lm", self.args.lm, "--lexicon", self.args.lexicon, "--tune_on",
                        "dev-clean", "--output_folder", str(folder / "eval_4gram")]  # fmt: skip
            return [finetune, evaluate]

        def finish(usages):
            return {"arm": arm, "budget": budget, "split": split, "seed": seed,
                    "metrics": finetune_metrics(folder, not self.args.no_lm)}  # fmt: skip

        return Job(f"finetune/{tag}/{split}/{seed}", commands, folder / "job.json",
                   folder / "job.log", finish, after=after)  # fmt: skip

    def probe_job(self, arm: str, budget: int | None, seed: int) -> Job:
        tag, pretrained, after = self.encoder_source(arm, budget)
        folder = self.work / "probe" / tag / str(seed)

        def commands():
            return [
                [self.python, self.recipe("probe.py"), str(ROOT / self.config["probe_yaml"]),
                 f"--pretrained={pretrained}", f"--seed={seed}", f"--output_folder={folder}"]
            ]  # fmt: skip

        def finish(usages):
            results = json.loads((folder / "results.json").read_text())
            return {"arm": arm, "budget": budget, "seed": seed, "probe": results}

        return Job(f"probe/{tag}/{seed}", commands, folder / "job.json", folder / "job.log",
                   finish, after=after)  # fmt: skip

    def build(self) -> list[Job]:
        """Jobs in run order: per seed, per arm (its pretraining before its first fine-tuning)."""
        keyed = []
        arms = self.config["arms"]
        budgets = self.config["pretrain_cpu_seconds"]
        for a, (arm, spec) in enumerate(arms.items()):
            if is_scratch(spec):
                continue
            keyed.append(((0, a, -2), self.calibration_job(arm, spec)))
            for budget in budgets:
                keyed.append(((0, a, -1), self.pretrain_job(arm, spec, budget)))
        for s, seed in enumerate(self.config["finetune_seeds"]):
            for a, (arm, spec) in enumerate(arms.items()):
                probe_seeds = self.config.get("probe_seeds", self.config["finetune_seeds"])
                probed = spec is None or spec.get("probe", True)
                wanted = self.config.get("probe_yaml") and not self.args.no_probe
                if wanted and probed and seed in probe_seeds:
                    for budget in [None] if is_scratch(spec) else budgets:
                        keyed.append(((s, a, 0), self.probe_job(arm, budget, seed)))
                for split in self.config["splits"]:
                    for budget in [None] if is_scratch(spec) else budgets:
                        keyed.append(((s, a, 0), self.finetune_job(arm, budget, split, seed)))
        keyed.sort(key=lambda item: item[0])  # stable: the inner order stays
        return [job for _, job in keyed]


def finetune_metrics(folder: Path, with_lm: bool) -> dict:
    """Per test set CER, greedy WER, nats/char (and 4-gram WER); dev-clean CER at the end."""
    greedy = json.loads((folder / "results.json").read_text())
    lm = json.loads((folder / "eval_4gram" / "results.json").read_text()) if with_lm else None
    metrics: dict = {}
    for name in TEST_SETS:
        rates = greedy["sets"][name]
        metrics[name] = {
            "cer": rates["cer"],
            "wer_greedy": rates["wer"],
            "nats_per_char": greedy["info"][f"{name}_nats_per_char"],
        }
        if lm is not None:
            metrics[name]["wer_4gram"] = lm["sets"][name]["wer"]
    valid = [r for r in JsonLinesLog(str(folder / "train_steps.jsonl")).read() if "valid_CER" in r]
    metrics["dev-clean_cer"] = valid[-1]["valid_CER"] if valid else math.nan
    return metrics


# ---------------------------------------------------------------------- report
def cells(jobs: list[Job]) -> dict:
    """{(arm, budget, split): {"records": [...], "pretrain": record | None}} of finished jobs."""
    pretrain = {
        (r["arm"], r["budget"]): r
        for job in jobs
        if job.name.startswith("pretrain/") and (r := job.load()) is not None
    }
    grouped: dict = {}
    for job in jobs:
        record = job.load()
        if not job.name.startswith("finetune/") or record is None:
            continue
        key = (record["arm"], record["budget"], record["split"])
        cell = grouped.setdefault(key, {"records": [], "pretrain": pretrain.get(key[:2])})
        cell["records"].append(record)
    return grouped


PROBE_METRICS = (
    ("ctc/dev-clean/cer", "CTC probe dev-clean CER %"),
    ("ctc/dev-other/cer", "CTC probe dev-other CER %"),
    ("speaker/accuracy", "speaker ID accuracy %"),
)


def probe_cells(jobs: list[Job]) -> dict:
    """{(arm, budget): {metric: SeedSummary}} over the probe seeds of finished probe jobs."""
    grouped: dict = {}
    for job in jobs:
        record = job.load()
        if job.name.startswith("probe/") and record is not None:
            grouped.setdefault((record["arm"], record["budget"]), []).append(record["probe"])
    out = {}
    for key, results in grouped.items():
        out[key] = {
            "ctc/dev-clean/cer": summarize([r["ctc"]["dev-clean"]["cer"] for r in results]),
            "ctc/dev-other/cer": summarize([r["ctc"]["dev-other"]["cer"] for r in results]),
            "speaker/accuracy": summarize([r["speaker"]["accuracy"] for r in results]),
        }
    return out


def ranking_agreement(summary: dict, probes: dict, split: str, budget: int) -> dict:
    """Kendall's tau between the arms' order by CTC-probe dev-clean CER and by fine-tuned
    dev-clean CER (1 = the probe ranks the arms exactly as fine-tuning does)."""
    from scipy.stats import kendalltau

    arms = [
        (arm, probes[(arm, b)]["ctc/dev-clean/cer"].mean, cell["dev-clean/cer"].mean)
        for (arm, b, s), cell in summary.items()
        if s == split and b in (budget, None) and (arm, b) in probes
    ]
    if len(arms) < 3:
        return {"arms": len(arms), "kendall_tau": None}
    tau = kendalltau([a[1] for a in arms], [a[2] for a in arms]).statistic
    return {
        "arms": len(arms),
        "kendall_tau": round(float(tau), 3),
        "probe_order": [a[0] for a in sorted(arms, key=lambda a: a[1])],
        "finetune_order": [a[0] for a in sorted(arms, key=lambda a: a[2])],
    }


def probe_table(probes: dict) -> list[str]:
    lines = [
        "| arm | budget | " + " | ".join(label for _, label in PROBE_METRICS) + " |",
        "|---" * (2 + len(PROBE_METRICS)) + "|",
    ]
    for (arm, budget), cell in sorted(probes.items(), key=str):
        shown = " | ".join(cell[key].show() for key, _ in PROBE_METRICS)
        lines.append(f"| {arm} | {budget or '-'} | {shown} |")
    return lines


def summarize_cell(records: list[dict]) -> dict:
    out = {"seeds": sorted(r["seed"] for r in records)}
    for name in TEST_SETS:
        for key, _ in METRICS:
            values = [r["metrics"][name][key] for r in records if key in r["metrics"][name]]
            out[f"{name}/{key}"] = summarize(values)
    out["dev-clean/cer"] = summarize([r["metrics"]["dev-clean_cer"] for r in records])
    return out


def comparisons(summary: dict, split: str, budget: int) -> dict:
    """Relative gains (%) over scratch and of aqc over data2vec on each engine, and for each
    pretrained arm whether it is clearly (2 std) below scratch on both test sets in CER and
    4-gram WER. With several scratch arms (fine-tuning variants) a gain is taken over the best
    of them per metric, and "clearly below" must hold against every one."""
    at = {arm: cell for (arm, b, s), cell in summary.items() if s == split and b in (budget, None)}
    scratch_arms = [cell for (arm, b, s), cell in summary.items() if s == split and b is None]
    result: dict = {"over_scratch": {}, "clearly_beats_scratch": {}, "aqc_over_data2vec": {}}
    pretrained = {(a, b) for (a, b, s) in summary if s == split and b == budget}
    for arm, cell in at.items():
        if (arm, budget) not in pretrained or not scratch_arms:
            continue
        result["over_scratch"][arm] = {
            key: relative_gain(min(sc[key].mean for sc in scratch_arms), value.mean)
            for key, value in cell.items()
            if isinstance(value, SeedSummary)
            and value["n"]
            and all(key in sc for sc in scratch_arms)
        }
        result["clearly_beats_scratch"][arm] = all(
            clearly_lower(cell[f"{name}/{key}"], sc[f"{name}/{key}"])
            for name in TEST_SETS
            for key in ("cer", "wer_4gram")
            for sc in scratch_arms
        )
    for aqc, base in AQC_PAIRS:
        if aqc in at and base in at:
            result["aqc_over_data2vec"][f"{aqc} vs {base}"] = {
                name: relative_gain(at[base][f"{name}/cer"].mean, at[aqc][f"{name}/cer"].mean)
                for name in TEST_SETS
            }
    return result


def gains_table(gains: dict) -> list[str]:
    """Markdown rows: gains over scratch (CER, 4-gram WER), the 2-std test, aqc vs data2vec."""
    columns = [f"{n}/{k}" for n in TEST_SETS for k in ("cer", "wer_4gram")]
    lines = [
        "| arm | " + " | ".join(f"gain over scratch, {c} %" for c in columns)
        + " | beats scratch by > 2 std (all four) |",
        "|---" * (len(columns) + 2) + "|",
    ]  # fmt: skip
    for arm, row in gains["over_scratch"].items():
        shown = " | ".join(f"{row.get(c, math.nan):+.1f}" for c in columns)
        verdict = "yes" if gains["clearly_beats_scratch"][arm] else "no"
        lines.append(f"| {arm} | {shown} | {verdict} |")
    for pair, row in gains["aqc_over_data2vec"].items():
        shown = ", ".join(f"{n} {row[n]:+.1f} %" for n in TEST_SETS)
        lines.append(f"\n{pair}, relative CER gain: {shown} (paper: 14.1 % / 20.9 % WER)")
    return lines


def markdown(summary: dict, probes: dict, config: dict, meta: dict) -> str:
    lines = [
        "# SSL gain on the embedded corpus",
        "",
        f"Written {meta['date']} by `benchmarks/ssl_gain.py`; machine: {meta['machine']}; "
        f"{meta['parallel']} jobs side by side, {meta['threads']} thread(s) each, "
        f"{meta['precision']}; {meta['jobs_done']} of {meta['jobs_total']} jobs done, "
        f"{meta['cpu_hours']:.2f} CPU hours. Mean ± sample std over fine-tuning seeds (n); "
        "lower is better everywhere.",
        "",
    ]
    for split in config["splits"]:
        for budget in config["pretrain_cpu_seconds"]:
            rows = {a: c for (a, b, s), c in summary.items() if s == split and b in (budget, None)}
            if not rows:
                continue
            lines += [f"## {split} fine-tuning, pretraining budget {budget} CPU s", ""]
            header = "| arm | pretraining updates, CPU s | dev-clean CER |"
            header += "".join(f" {n} {label} |" for n in TEST_SETS for _, label in METRICS)
            lines += [header, "|---" * (3 + len(TEST_SETS) * len(METRICS)) + "|"]
            for arm, cell in rows.items():
                pre = cell["pretrain"]
                used = "-" if pre is None else f"{pre['updates']}, {pre['cpu_seconds']:.0f}"
                row = f"| {arm} | {used} | {cell['dev-clean/cer'].show()} |"
                row += "".join(
                    f" {cell[f'{n}/{key}'].show(3 if key == 'nats_per_char' else 2)} |"
                    for n in TEST_SETS
                    for key, _ in METRICS
                )
                lines.append(row)
            lines += ["", *gains_table(comparisons(summary, split, budget)), ""]
            agreement = ranking_agreement(summary, probes, split, budget)
            if agreement["kendall_tau"] is not None:
                lines += [
                    f"Probe vs fine-tuning ranking (dev-clean CER, {agreement['arms']} arms): "
                    f"Kendall tau {agreement['kendall_tau']:+.2f}; probe "
                    f"{' < '.join(agreement['probe_order'])}, fine-tuning "
                    f"{' < '.join(agreement['finetune_order'])}.",
                    "",
                ]
    if probes:
        lines += [
            "## Frozen-encoder probes (recipes/LibriSpeech/probe.py)",
            "",
            *probe_table(probes),
        ]
    return "\n".join(lines) + "\n"


def write_report(jobs: list[Job], config: dict, args: argparse.Namespace) -> None:
    grouped = cells(jobs)
    probes = probe_cells(jobs)
    summary = {
        key: {**summarize_cell(cell["records"]), "pretrain": cell["pretrain"]}
        for key, cell in grouped.items()
    }
    cpu = sum(r["cpu_seconds"] for job in jobs if (r := job.load()) is not None)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "parallel": args.parallel,
        "threads": args.threads,
        "precision": args.precision,
        "cpu_hours": cpu / 3600,
        "jobs_done": sum(job.load() is not None for job in jobs),
        "jobs_total": len(jobs),
    }
    out = Path(args.results)
    payload = {
        "meta": meta,
        "config": config,
        "cells": [
            {"arm": a, "budget": b, "split": s, **cell}
            for (a, b, s), cell in sorted(summary.items(), key=str)
        ],
        "comparisons": {
            f"{split}/{budget}": comparisons(summary, split, budget)
            for split in config["splits"]
            for budget in config["pretrain_cpu_seconds"]
        },
        "probes": [
            {"arm": a, "budget": b, **cell} for (a, b), cell in sorted(probes.items(), key=str)
        ],
        "probe_ranking_agreement": {
            f"{split}/{budget}": ranking_agreement(summary, probes, split, budget)
            for split in config["splits"]
            for budget in config["pretrain_cpu_seconds"]
        },
    }
    write_text_atomic(out / "ssl_gain.json", json.dumps(payload, indent=2, default=str) + "\n")
    write_text_atomic(out / "ssl_gain.md", markdown(summary, probes, config, meta))
    plot_dev_cer(summary, out / "ssl_gain_dev_cer.png")


def plot_dev_cer(summary: dict, path: Path) -> None:
    """Dev-clean CER after fine-tuning against the pretraining CPU seconds, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, split in zip(axes[0], ("10m", "1h")):
        arms = sorted({a for (a, _, s) in summary if s == split})
        for arm in arms:
            points = sorted(
                (0.0 if c["pretrain"] is None else c["pretrain"]["cpu_seconds"], c["dev-clean/cer"])
                for (a, _, s), c in summary.items()
                if a == arm and s == split
            )
            xs = [x for x, _ in points]
            ys = [y.mean for _, y in points]
            errs = [0.0 if math.isnan(y.std) else y.std for _, y in points]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=arm)
        ax.set_title(f"{split} fine-tuning")
        ax.set_xlabel("pretraining CPU seconds")
        ax.set_ylabel("dev-clean CER % (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        if arms:
            ax.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "benchmarks" / "ssl_gain.yaml"))
    parser.add_argument("--arms", nargs="+", help="run only these arms (in this order)")
    parser.add_argument("--budgets", nargs="+", type=int, help="pretraining CPU-second budgets")
    parser.add_argument("--splits", nargs="+", choices=["10m", "1h", "10h"])
    parser.add_argument("--seeds", type=int, help="fine-tuning seeds per cell (1..N)")
    parser.add_argument("--parallel", type=int, default=2, help="jobs side by side")
    parser.add_argument("--threads", type=int, default=1, help="threads per job")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--work_dir", default="results/ssl_gain")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--lm", default="results/lm/4gram.arpa")
    parser.add_argument("--lexicon", default="results/lm/lexicon.txt")
    parser.add_argument("--no_lm", action="store_true", help="greedy scoring only")
    parser.add_argument("--finetune_overrides", nargs="*", default=[], help="e.g. --max_update=500")
    parser.add_argument("--no_probe", action="store_true", help="skip the frozen-encoder probes")
    parser.add_argument("--report_only", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = load_config(Path(args.config), args)
    jobs = Grid(config, args).build()
    if not args.report_only:
        done = sum(job.load() is not None for job in jobs)
        logger.info("%d jobs, %d already done; work in %s", len(jobs), done, args.work_dir)
        failed = run_jobs(jobs, args.parallel, args.threads,
                          on_done=lambda job: write_report(jobs, config, args))  # fmt: skip
        if failed:
            logger.error("not finished: %s", ", ".join(failed))
    write_report(jobs, config, args)
    logger.info("report: %s", Path(args.results) / "ssl_gain.md")
    return 0 if args.report_only or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
