"""State files of a data preparation: merged JSON objects, written atomically.

Preparations store per-CSV options and summaries in JSON files (``prepare_options.json``,
``prepare_summary.json``); these helpers read them forgivingly and update them atomically.
"""

import json
import logging
from pathlib import Path

from d2v_speech.atomic_files import write_text_atomic

OPTIONS_NAME = "prepare_options.json"
SUMMARY_NAME = "prepare_summary.json"


def read_json(path: Path) -> dict:
    """The JSON object stored at ``path``; {} when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def update_json(path: Path, updates: dict) -> None:
    """Merge ``updates`` into the JSON object stored at ``path`` (keys sorted, indented)."""
    content = read_json(path)
    content.update(updates)
    write_text_atomic(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


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
