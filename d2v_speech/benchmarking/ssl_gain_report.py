"""The SSL-gain benchmark's report: finished jobs' records -> seed summaries, gains over scratch,
aqc vs data2vec, probe agreement, dev CER by pretraining budget; written as JSON, markdown and a
dev-CER plot (``benchmarks/ssl_gain.py`` runs the jobs)."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.benchmarking.job_runner import Job
from d2v_speech.benchmarking.seed_statistics import (
    SeedSummary,
    clearly_lower,
    relative_gain,
    summarize,
)

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
# the metrics of the "beats scratch" bar: CER and 4-gram WER on each test set
BAR_COLUMNS = tuple(f"{test}/{key}" for test in TEST_SETS for key in ("cer", "wer_4gram"))
# greedy CER of the scored (best-checkpoint) model on the dev sets, from the dev-scoring jobs
DEV_SETS = ("dev-clean", "dev-other")


def finished(jobs: list[Job], kind: str) -> list[dict]:
    """The saved records of the finished jobs named ``kind/...``."""
    return [r for job in jobs if job.name.startswith(f"{kind}/") and (r := job.load()) is not None]


def cells(jobs: list[Job]) -> dict:
    """{(arm, budget, split): {"records": [...], "dev": [...], "pretrain": record | None}} of
    finished fine-tuning and dev-scoring jobs."""
    pretrain = {(r["arm"], r["budget"]): r for r in finished(jobs, "pretrain")}
    grouped: dict = {}
    for kind, field in (("finetune", "records"), ("devscore", "dev")):
        for record in finished(jobs, kind):
            key = (record["arm"], record["budget"], record["split"])
            cell = grouped.setdefault(
                key, {"records": [], "dev": [], "pretrain": pretrain.get(key[:2])}
            )
            cell[field].append(record)
    return {key: cell for key, cell in grouped.items() if cell["records"]}


PROBE_METRICS = (
    ("ctc/dev-clean/cer", "CTC probe dev-clean CER %"),
    ("ctc/dev-other/cer", "CTC probe dev-other CER %"),
    ("speaker/accuracy", "speaker ID accuracy %"),
)


def probe_cells(jobs: list[Job]) -> dict:
    """{(arm, budget): {metric: SeedSummary}} over the probe seeds of finished probe jobs."""
    grouped: dict = {}
    for record in finished(jobs, "probe"):
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
        if s == split and b in (budget, None) and (arm, b) in probes and cell["dev-clean/cer"]["n"]
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


def summarize_cell(records: list[dict], dev_records: list[dict]) -> dict:
    """Seed summaries of a cell's test metrics and of its dev CERs (the dev-scored seeds)."""
    out = {"seeds": sorted(r["seed"] for r in records)}
    for name in TEST_SETS:
        for key, _ in METRICS:
            values = [r["metrics"][name][key] for r in records if key in r["metrics"][name]]
            out[f"{name}/{key}"] = summarize(values)
    for name in DEV_SETS:
        out[f"{name}/cer"] = summarize([r["dev"][name]["cer"] for r in dev_records])
    return out


def all_budgets(summary: dict) -> list[int]:
    """The pretraining budgets of the cells, ascending."""
    return sorted({b for (_, b, _) in summary if b is not None})


def comparisons(summary: dict, split: str, budget: int) -> dict:
    """Relative gains (%) over scratch and of aqc over data2vec on each engine, and for each
    pretrained arm whether it is clearly (2 std) below scratch on both test sets in CER and
    4-gram WER. With several scratch arms (fine-tuning variants) a gain is taken over the best
    of them per metric, and "clearly below" must hold against every one."""
    at = {arm: cell for (arm, b, s), cell in summary.items() if s == split and b in (budget, None)}
    scratch_named = {arm: cell for (arm, b, s), cell in summary.items() if s == split and b is None}
    scratch_arms = list(scratch_named.values())
    result: dict = {"over_scratch": {}, "clearly_beats_scratch": {}, "clearly_below": {},
                    "aqc_over_data2vec": {}}  # fmt: skip
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
        # per scratch arm, the metrics on which the arm is clearly lower (what fails, at a glance)
        result["clearly_below"][arm] = {
            name: [column for column in BAR_COLUMNS if clearly_lower(cell[column], sc[column])]
            for name, sc in scratch_named.items()
        }
        result["clearly_beats_scratch"][arm] = all(
            len(held) == len(BAR_COLUMNS) for held in result["clearly_below"][arm].values()
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
    lines = [
        "| arm | " + " | ".join(f"gain over scratch, {c} %" for c in BAR_COLUMNS)
        + " | beats scratch by > 2 std (all four) | clearly below, per scratch arm |",
        "|---" * (len(BAR_COLUMNS) + 3) + "|",
    ]  # fmt: skip
    for arm, row in gains["over_scratch"].items():
        shown = " | ".join(f"{row.get(c, math.nan):+.1f}" for c in BAR_COLUMNS)
        verdict = "yes" if gains["clearly_beats_scratch"][arm] else "no"
        below = "; ".join(
            f"{name}: {', '.join(held) or 'none'}"
            for name, held in gains["clearly_below"][arm].items()
        )
        lines.append(f"| {arm} | {shown} | {verdict} | {below} |")
    for pair, row in gains["aqc_over_data2vec"].items():
        shown = ", ".join(f"{n} {row[n]:+.1f} %" for n in TEST_SETS)
        lines.append(f"\n{pair}, relative CER gain: {shown} (paper: 14.1 % / 20.9 % WER)")
    return lines


def results_table(rows: dict) -> list[str]:
    """Markdown table of one split and budget: per arm its pretraining, dev and test metrics."""
    header = "| arm | pretraining updates, CPU s |"
    header += "".join(f" {n} CER |" for n in DEV_SETS)
    header += "".join(f" {n} {label} |" for n in TEST_SETS for _, label in METRICS)
    lines = [header, "|---" * (2 + len(DEV_SETS) + len(TEST_SETS) * len(METRICS)) + "|"]
    for arm, cell in rows.items():
        pre = cell["pretrain"]
        used = "-" if pre is None else f"{pre['updates']}, {pre['cpu_seconds']:.0f}"
        row = f"| {arm} | {used} |" + "".join(f" {cell[f'{n}/cer'].show()} |" for n in DEV_SETS)
        row += "".join(
            f" {cell[f'{n}/{key}'].show(3 if key == 'nats_per_char' else 2)} |"
            for n in TEST_SETS
            for key, _ in METRICS
        )
        lines.append(row)
    return lines


def budget_overruns(rows: dict, budget: int, tolerance: float = 0.1) -> list[str]:
    """Lines naming the arms whose pretraining used more than ``tolerance`` off ``budget``.

    The update count comes from a short calibration run; CPU seconds per update rise when other
    jobs share the cores (caches, memory bandwidth), so an arm calibrated alone can overspend."""
    lines = []
    for arm, cell in rows.items():
        pre = cell["pretrain"]
        if pre is not None and abs(pre["cpu_seconds"] / budget - 1) > tolerance:
            lines.append(
                f"Note: {arm} used {pre['cpu_seconds']:.0f} CPU s for its {pre['updates']} "
                f"updates, {pre['cpu_seconds'] / budget - 1:+.0%} off the {budget} s budget."
            )
    return lines


def budget_table(summary: dict) -> list[str]:
    """Markdown rows: dev CER of every arm at every pretraining budget it ran (time to quality)."""
    lines = [
        "| split | arm | budget CPU s | pretraining CPU s used | "
        + " | ".join(f"{n} CER" for n in DEV_SETS) + " |",
        "|---" * (4 + len(DEV_SETS)) + "|",
    ]  # fmt: skip
    for (arm, budget, split), cell in sorted(summary.items(), key=lambda kv: str(kv[0])):
        pre = cell["pretrain"]
        used = "-" if pre is None else f"{pre['cpu_seconds']:.0f}"
        shown = " | ".join(cell[f"{n}/cer"].show() for n in DEV_SETS)
        lines.append(f"| {split} | {arm} | {budget or '-'} | {used} | {shown} |")
    return lines


def markdown(summary: dict, probes: dict, splits: list[str], meta: dict) -> str:
    lines = [
        "# SSL gain on the embedded corpus",
        "",
        f"Written {meta['date']} by `benchmarks/ssl_gain.py`; machine: {meta['machine']}; "
        f"{meta['parallel']} jobs side by side, {meta['threads']} thread(s) each, "
        f"{meta['precision']}; {meta['jobs_done']} of {meta['jobs_total']} jobs done, "
        f"{meta['cpu_hours']:.2f} CPU hours. Mean ± sample std over fine-tuning seeds (n); "
        "lower is better everywhere. Dev CER: greedy, of the model scored on the test sets.",
        "",
    ]
    for split in splits:
        for budget in all_budgets(summary):
            rows = {a: c for (a, b, s), c in summary.items() if s == split and b in (budget, None)}
            if not any(b == budget for (_, b, s) in summary if s == split):
                continue
            lines += [f"## {split} fine-tuning, pretraining budget {budget} CPU s", ""]
            lines += [*results_table(rows), ""]
            if overruns := budget_overruns(rows, budget):
                lines += [*overruns, ""]
            lines += [*gains_table(comparisons(summary, split, budget)), ""]
            agreement = ranking_agreement(summary, probes, split, budget)
            if agreement["kendall_tau"] is not None:
                lines += [
                    f"Probe vs fine-tuning ranking (dev-clean CER, {agreement['arms']} arms): "
                    f"Kendall tau {agreement['kendall_tau']:+.2f}; probe "
                    f"{' < '.join(agreement['probe_order'])}, fine-tuning "
                    f"{' < '.join(agreement['finetune_order'])}.",
                    "",
                ]
    lines += ["## Dev CER by pretraining budget", "", *budget_table(summary), ""]
    if probes:
        lines += [
            "## Frozen-encoder probes (recipes/LibriSpeech/probe.py)",
            "",
            *probe_table(probes),
        ]
    return "\n".join(lines) + "\n"


def write_report(jobs: list[Job], config: dict, results_dir: Path, run_settings: dict) -> None:
    """Tables and plot from the finished jobs: ``results_dir``/ssl_gain.{json,md} and
    ssl_gain_dev_cer.png; ``run_settings``: parallel, threads and precision, as run."""
    grouped = cells(jobs)
    probes = probe_cells(jobs)
    summary = {
        key: {**summarize_cell(cell["records"], cell["dev"]), "pretrain": cell["pretrain"]}
        for key, cell in grouped.items()
    }
    cpu = sum(r["cpu_seconds"] for job in jobs if (r := job.load()) is not None)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        **run_settings,
        "cpu_hours": cpu / 3600,
        "jobs_done": sum(job.load() is not None for job in jobs),
        "jobs_total": len(jobs),
    }
    keys = [(split, budget) for split in config["splits"] for budget in all_budgets(summary)]
    payload = {
        "meta": meta,
        "config": config,
        "cells": [
            {"arm": a, "budget": b, "split": s, **cell}
            for (a, b, s), cell in sorted(summary.items(), key=str)
        ],
        "comparisons": {f"{s}/{b}": comparisons(summary, s, b) for s, b in keys},
        "probes": [
            {"arm": a, "budget": b, **cell} for (a, b), cell in sorted(probes.items(), key=str)
        ],
        "probe_ranking_agreement": {
            f"{s}/{b}": ranking_agreement(summary, probes, s, b) for s, b in keys
        },
    }
    out = Path(results_dir)
    write_text_atomic(out / "ssl_gain.json", json.dumps(payload, indent=2, default=str) + "\n")
    write_text_atomic(out / "ssl_gain.md", markdown(summary, probes, config["splits"], meta))
    plot_dev_cer(summary, out / "ssl_gain_dev_cer.png")


def plot_dev_cer(summary: dict, path: Path) -> None:
    """Dev CER (clean and other) after fine-tuning against the pretraining CPU seconds, one line
    per arm, one column per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 8), squeeze=False)
    # one colour per arm in every panel
    colours = {arm: f"C{i}" for i, arm in enumerate(sorted({a for (a, _, _) in summary}))}
    for row, dev in zip(axes, DEV_SETS):
        for ax, split in zip(row, ("10m", "1h")):
            arms = sorted({a for (a, _, s) in summary if s == split})
            for arm in arms:
                points = sorted(
                    (
                        0.0 if c["pretrain"] is None else c["pretrain"]["cpu_seconds"],
                        c[f"{dev}/cer"],
                    )
                    for (a, _, s), c in summary.items()
                    if a == arm and s == split and c[f"{dev}/cer"]["n"]
                )
                xs = [x for x, _ in points]
                ys = [y.mean for _, y in points]
                errs = [0.0 if math.isnan(y.std) else y.std for _, y in points]
                ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=arm, color=colours[arm])
            ax.set_title(f"{split} fine-tuning, {dev}")
            ax.set_xlabel("pretraining CPU seconds")
            ax.set_ylabel(f"{dev} CER % (mean ± std over seeds)")
            ax.grid(alpha=0.3)
            if arms:
                ax.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
