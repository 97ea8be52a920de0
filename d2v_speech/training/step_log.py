"""Per-step training statistics: averaged over a logging interval, written as JSON lines, plotted.

The JSON-lines file is the machine-readable record of a run; `plot_training_curves` turns it
into the PNG that people look at to judge whether a run is healthy.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping

import torch
from speechbrain.utils.distributed import if_main_process

from d2v_speech.atomic_files import write_text_atomic


class IntervalAverager:
    """Accumulates scalar statistics between two log lines and returns their means."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, stats: Mapping[str, object]) -> None:
        for key, value in stats.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    continue
                value = value.detach().float().item()
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.sums[key] += float(value)
                self.counts[key] += 1

    def pop_means(self) -> dict[str, float]:
        means = {key: self.sums[key] / self.counts[key] for key in self.sums}
        self.sums.clear()
        self.counts.clear()
        return means


class JsonLinesLog:
    """Appends one JSON object per line (main process only)."""

    def __init__(self, path: str):
        self.path = path

    def write(self, record: Mapping[str, object]) -> None:
        if not if_main_process():
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def _lines(self) -> list[tuple[str, dict | None]]:
        """(line, its record or None when it does not parse) for every non-empty line."""
        if not os.path.exists(self.path):
            return []
        parsed = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    parsed.append((line, json.loads(line)))
                except json.JSONDecodeError:
                    parsed.append((line, None))
        return parsed

    def read(self) -> list[dict]:
        """Every record; a last line cut short by a kill is left out."""
        return [record for _, record in self._lines() if record is not None]

    def truncate_after(self, update: int) -> int:
        """Drop the records of updates after ``update`` (main process only), so that a run
        resumed from the checkpoint of that update logs each update once; returns how many
        records were dropped."""
        if not if_main_process():
            return 0
        lines = self._lines()
        kept = [r for _, r in lines if r is not None and int(r.get("update", 0)) <= update]
        if len(kept) != len(lines):
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
            write_text_atomic(self.path, text)
        return len(lines) - len(kept)


def plot_training_curves(records: list[dict], png_path: str, x_key: str = "update") -> list[str]:
    """One panel per training quantity against `x_key`, with its `valid_` twin (logged once per
    epoch) as markers on the same panel; returns the plotted keys.

    Records of a resumed run may repeat updates; the latest value of an update wins.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train: dict[int, dict] = {}
    valid: dict[int, dict] = {}
    for record in records:
        if x_key not in record:
            continue
        target = valid if any(k.startswith("valid_") for k in record) else train
        target.setdefault(int(record[x_key]), {}).update(record)
    if not train:
        return []
    numeric = {k for r in train.values() for k, v in r.items() if isinstance(v, (int, float))} - {
        x_key,
        "epoch",
        "time",
    }
    keys = [k for k in PLOT_FIRST if k in numeric] + sorted(numeric - set(PLOT_FIRST))
    columns = 4
    rows = max(1, math.ceil(len(keys) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs = sorted(u for u in train if key in train[u])
        ax.plot(xs, [train[u][key] for u in xs], lw=1.2, label="train")
        valid_xs = sorted(u for u in valid if f"valid_{key}" in valid[u])
        if valid_xs:
            ax.plot(
                valid_xs, [valid[u][f"valid_{key}"] for u in valid_xs], "o", ms=4, label="valid"
            )
            ax.legend(fontsize=6)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return keys


# the quantities people check first come first in the figure
PLOT_FIRST = (
    "loss",
    "loss_regression",
    "loss_contrastive_student",
    "loss_contrastive_teacher",
    "target_var",
    "pred_var",
    "cnn_std",
    "code_perplexity",
    "codes_in_use",
    "accuracy_student",
    "accuracy_teacher",
    "ema_decay",
    "lr",
    "audio_sec_per_sec",
)
