"""Atomic text output: readers never see a half-written LM text, ARPA or lexicon."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["write_lines_atomically"]


def write_lines_atomically(path: str | Path, lines: Iterable[str]) -> Path:
    """Write each line plus a newline to a temporary sibling, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as stream:
            for line in lines:
                stream.write(line + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
