"""Atomic text output: a reader (or a resumed run) never sees half of a file; and the JSON state
files written that way (stable text, read back forgivingly)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["json_text", "read_json", "write_text_atomic"]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary sibling of ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid keeps two processes writing the same file from sharing a temporary
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def json_text(data: dict) -> str:
    """``data`` as stable JSON text (sorted keys, indented, final newline)."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_json(path: str | Path) -> dict:
    """The JSON object stored at ``path``; {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
