"""Files of a data preparation, written atomically: its CSVs and its merged JSON state objects.

Preparations store per-CSV options and summaries in JSON files (``prepare_options.json``,
``prepare_summary.json``); they read them with :func:`d2v_speech.atomic_files.read_json` ({} when
missing or unreadable) and update them atomically here.
"""

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from d2v_speech.atomic_files import json_text, read_json, write_text_atomic

OPTIONS_NAME = "prepare_options.json"
SUMMARY_NAME = "prepare_summary.json"


def write_csv(rows: list[dict], path: Path, columns: Sequence[str]) -> None:
    """Write rows sorted by ID, atomically (a crash never leaves a half CSV)."""
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["ID"]))
    os.replace(temporary, path)


def update_json(path: Path, updates: dict) -> None:
    """Merge ``updates`` into the JSON object stored at ``path`` (keys sorted, indented)."""
    content = read_json(path)
    content.update(updates)
    write_text_atomic(path, json_text(content))


def store_summaries(
    save_folder: Path,
    summaries: dict[str, dict],
    options: dict[str, dict],
    problem_counts: dict[str, int],
    log: logging.Logger,
) -> None:
    """Log one line per written CSV, then merge its summary and options into the state files.

    Options go last: a crash before them leaves the CSV looking stale, so it is redone.
    """
    for csv_name, summary in summaries.items():
        log.info(
            "%s: %d utterances, %.2f h, %d problems",
            csv_name,
            summary["utterances"],
            summary["hours"],
            problem_counts[csv_name],
        )
    if summaries:
        update_json(save_folder / SUMMARY_NAME, summaries)
        update_json(save_folder / OPTIONS_NAME, options)
