"""`torch.load` with one-line errors naming the file: empty, text, truncated or untrusted files."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import torch

from d2v_speech.checkpoints.loaded import (
    CheckpointError,
)


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a PyTorch file, judged from its first bytes; None if it may be."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "an empty file (0 bytes)"
    # torch.save writes a zip archive ("PK\x03\x04"); the legacy format is a pickle ("\x80")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    text = all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head)
    kind = "a text file, not" if text else "not"
    return f"{kind} a PyTorch checkpoint (it starts with {head[:12]!r})"


def load_torch_file(path: str | Path, allow_pickle: bool = False) -> Any:
    """`torch.load` on the CPU (`weights_only` unless `allow_pickle`); a file that is empty, text,
    damaged or untrusted raises `CheckpointError` with one line naming it."""
    return _torch_load(Path(path), allow_pickle)


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    reason = _not_a_checkpoint(path)
    if reason is not None:
        raise CheckpointError(f"{path}: {reason}")
    try:
        return _torch_load_checked(path, allow_pickle)
    except (EOFError, RuntimeError, OSError) as error:
        detail = str(error).strip().split(". ")[0][:160] if str(error).strip() else "end of file"
        raise CheckpointError(
            f"{path}: a damaged PyTorch file ({type(error).__name__}: {detail}); "
            "a truncated copy or an interrupted save?"
        ) from error


def _torch_load_checked(path: Path, allow_pickle: bool) -> Any:
    try:
        # fairseq checkpoints of the older style keep their cfg in an argparse.Namespace
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            reason = str(error).strip().splitlines()[-1][:300]
            raise CheckpointError(
                f"{path}: cannot be read with torch.load(weights_only=True) ({reason}). If you "
                "trust the file, pass allow_pickle=True (CLI: --allow-pickle)"
            ) from error
        return torch.load(path, map_location="cpu", weights_only=False)
