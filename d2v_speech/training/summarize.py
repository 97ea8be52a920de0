"""Summarise a pretraining run from its `train_steps.jsonl`: start and end of every curve,
health checks, and where the files are.

    python -m d2v_speech.training.summarize results/pretrain/aqc_tiny/1234

Prints a markdown table and writes `summary.json` next to the log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from d2v_speech.training.step_log import JsonLinesLog

# (key, what a healthy run does); shown first, in this order, when logged
HEADLINE = (
    ("loss", "falls"),
    ("loss_regression", "falls"),
    ("loss_contrastive_student", "falls"),
    ("loss_contrastive_teacher", "falls"),
    ("target_var", "stays above its threshold (0.1 for BASE)"),
    ("pred_var", "follows target_var"),
    ("cnn_std", "stays away from 0"),
    ("code_perplexity", "stays well above 1"),
    ("codes_in_use", "stays well above 1"),
    ("ema_decay", "rises to its end value"),
    ("lr", "follows the schedule"),
    ("audio_sec_per_sec", "throughput"),
)


def _window_mean(records: list[dict], key: str, first: bool) -> float | None:
    """Mean of the first (or last) few log lines; never overlapping for runs of >= 2 lines."""
    values = [r[key] for r in records if key in r]
    if not values:
        return None
    window = max(1, min(3, len(values) // 2))
    chosen = values[:window] if first else values[-window:]
    return sum(chosen) / len(chosen)


def summarize_run(output_folder: str) -> dict:
    """Start/end means (3 log lines each) of every logged training statistic, plus run facts."""
    path = os.path.join(output_folder, "train_steps.jsonl")
    records = JsonLinesLog(path).read()
    train = [r for r in records if "loss" in r]
    if not train:
        raise FileNotFoundError(f"{path}: no training log lines yet; has the run started?")
    latest: dict[int, dict] = {}
    for record in train:
        latest[record["update"]] = record
    ordered = [latest[u] for u in sorted(latest)]
    keys = [k for k, _ in HEADLINE if k in ordered[-1]]
    keys += sorted(k for k in ordered[-1] if k not in keys and k not in ("update", "time"))
    curves = {
        key: {"start": _window_mean(ordered, key, True), "end": _window_mean(ordered, key, False)}
        for key in keys
    }
    valid = [r for r in records if "valid_loss" in r]
    summary = {
        "output_folder": output_folder,
        "updates": ordered[-1]["update"],
        "curves": curves,
        "valid_loss": [r["valid_loss"] for r in valid],
        "loss_fell": curves["loss"]["end"] < curves["loss"]["start"],
        "curves_png": os.path.join(output_folder, "training_curves.png"),
    }
    with open(os.path.join(output_folder, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    return summary


def format_summary(summary: dict) -> str:
    notes = dict(HEADLINE)
    lines = [
        f"Run {summary['output_folder']}: {summary['updates']} updates, "
        f"loss {'fell' if summary['loss_fell'] else 'did NOT fall'}",
        "",
        "| statistic | start | end | healthy run |",
        "|---|---|---|---|",
    ]
    for key, values in summary["curves"].items():
        start, end = values["start"], values["end"]
        lines.append(f"| {key} | {start:.4g} | {end:.4g} | {notes.get(key, '')} |")
    if summary["valid_loss"]:
        shown = ", ".join(f"{v:.4g}" for v in summary["valid_loss"])
        lines += ["", f"valid loss per epoch: {shown}"]
    lines += ["", f"curves: {summary['curves_png']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_folder", help="the recipe's output_folder")
    args = parser.parse_args(argv)
    print(format_summary(summarize_run(args.output_folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
