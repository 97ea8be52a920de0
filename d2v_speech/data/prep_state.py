"""State files of a data preparation: atomic text writes and merged JSON objects.

Preparations store per-CSV options and summaries in JSON files (``prepare_options.json``,
``prepare_summary.json``); these helpers read them forgivingly and update them atomically.
"""

import json
import os
from pathlib import Path


def read_json(path: Path) -> dict:
    """The JSON object stored at ``path``; {} when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a ``.part`` file and a rename (a crash never leaves half a file)."""
    temporary = path.with_name(path.name + ".part")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def update_json(path: Path, updates: dict) -> None:
    """Merge ``updates`` into the JSON object stored at ``path`` (keys sorted, indented)."""
    content = read_json(path)
    content.update(updates)
    write_text_atomic(path, json.dumps(content, indent=2, sort_keys=True) + "\n")
