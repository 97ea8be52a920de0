"""Writing a generated corpus safely: a staging folder that an interrupted run resumes, a lock
for concurrent callers, and a stamp of the settings written last (both synthetic corpora)."""

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from d2v_speech.atomic_files import json_text, read_json, write_text_atomic


def is_stamped(
    out_dir: Path, settings: dict, stamp_name: str, owned_entries: tuple[str, ...]
) -> bool:
    """True if ``out_dir/stamp_name`` records ``settings`` and every owned entry exists."""
    out_dir = Path(out_dir)
    if read_json(out_dir / stamp_name) != settings:
        return False
    return all((out_dir / entry).exists() for entry in owned_entries)


@contextmanager
def exclusive(out_dir: Path, lock_name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` so concurrent callers (e.g. DDP ranks) take turns."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / lock_name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_staging(staging: Path, settings: dict, force: bool) -> None:
    """Reuse a staging folder left by an interrupted run with the same settings, else start anew."""
    marker = staging / "settings.json"
    if staging.exists() and (force or read_json(marker) != settings):
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, json_text(settings))


def publish(
    staging: Path,
    out_dir: Path,
    settings: dict,
    stamp_name: str,
    owned_entries: tuple[str, ...],
) -> None:
    """Move the staged entries into place, replacing what a previous run left; stamp it last."""
    (out_dir / stamp_name).unlink(missing_ok=True)
    for entry in owned_entries:
        target = out_dir / entry
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(staging / entry, target)
    write_text_atomic(out_dir / stamp_name, json_text(settings))
    shutil.rmtree(staging)
