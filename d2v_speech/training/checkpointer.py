"""A SpeechBrain Checkpointer that a SIGKILL can never leave half-written, and that survives a
damaged checkpoint.

SpeechBrain writes a checkpoint's `CKPT.yaml` (which marks the folder as a checkpoint) before the
recoverables, so a kill during saving leaves a folder that looks complete but is not. Here the
meta file is written under a temporary name and renamed into place only after every
recoverable is on disk; folders without it are ignored on recovery and removed later.

A checkpoint whose files are damaged afterwards (a truncated `objective.ckpt`, an empty
`counter.ckpt` after a full disk) is reported by file name and moved aside as
`damaged-CKPT+...` (never deleted); recovery then loads the next one in the same order.
"""

from __future__ import annotations

import os
import shutil

from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    DEFAULT_LOAD_HOOKS,
    METAFNAME,
    Checkpointer,
    get_default_hook,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)
PARTIAL_SUFFIX = ".partial"
DAMAGED_PREFIX = "damaged-"


class DamagedCheckpointError(RuntimeError):
    """A recoverable's file could not be loaded; ``path`` names it."""

    def __init__(self, path, error: Exception):
        reason = str(error).strip().split("\n")[0][:200] or type(error).__name__
        super().__init__(f"{path}: cannot be loaded ({type(error).__name__}: {reason})")
        self.path = path


def _reporting(hook):
    """``hook`` that names the file it failed to load."""

    def load(obj, path, end_of_epoch):
        try:
            return hook(obj, path, end_of_epoch)
        except Exception as error:  # torch, yaml and pickle raise many types for a bad file
            raise DamagedCheckpointError(path, error) from error

    return load


class AtomicCheckpointer(Checkpointer):
    """Checkpointer whose checkpoints appear atomically (see module docstring)."""

    def _save_checkpoint_metafile(self, fpath, meta_to_include=None, end_of_epoch=True):
        partial = fpath.parent / (fpath.name + PARTIAL_SUFFIX)
        return super()._save_checkpoint_metafile(partial, meta_to_include or {}, end_of_epoch)

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=20):
        checkpoint = super().save_checkpoint(meta or {}, end_of_epoch, name, verbosity)
        if if_main_process() and checkpoint is not None:
            ckpt_dir = checkpoint.path
            for entry in ckpt_dir.iterdir():
                _fsync(entry)
            os.replace(ckpt_dir / (METAFNAME + PARTIAL_SUFFIX), ckpt_dir / METAFNAME)
            _fsync(ckpt_dir / METAFNAME)
        ddp_barrier()
        return checkpoint

    def remove_incomplete(self) -> list[str]:
        """Delete checkpoint folders a kill left without their meta file; returns their names."""
        removed = []
        if not if_main_process() or not self.checkpoints_dir.exists():
            return removed
        for path in self.checkpoints_dir.iterdir():
            if (
                path.is_dir()
                and path.name.startswith(CKPT_PREFIX)
                and not (path / METAFNAME).exists()
            ):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        if removed:
            logger.warning(
                "removed incomplete checkpoints left by an interrupted save: %s", removed
            )
        return removed

    def _call_load_hooks(self, checkpoint):
        saved = dict(self.custom_load_hooks)
        try:
            for name, obj in self.recoverables.items():
                hook = saved.get(name) or get_default_hook(obj, DEFAULT_LOAD_HOOKS)
                if hook is not None:
                    self.custom_load_hooks[name] = _reporting(hook)
            return super()._call_load_hooks(checkpoint)
        finally:
            self.custom_load_hooks = saved

    def recover_if_possible(self, importance_key=None, max_key=None, min_key=None,
                            ckpt_predicate=None):  # fmt: skip
        """SpeechBrain's choice of checkpoint, falling back past damaged ones (moved aside)."""
        self.remove_incomplete()
        ddp_barrier()
        while True:
            chosen = self.find_checkpoint(importance_key, max_key, min_key, ckpt_predicate)
            if chosen is None:
                logger.info("Would load a checkpoint here, but none found yet.")
                return None
            try:
                self.load_checkpoint(chosen)
                return chosen
            except DamagedCheckpointError as error:
                aside = chosen.path.with_name(DAMAGED_PREFIX + chosen.path.name)
                logger.error(
                    "damaged checkpoint: %s; moved %s aside to %s and trying the next one",
                    error,
                    chosen.path.name,
                    aside.name,
                )
                if if_main_process():
                    os.replace(chosen.path, aside)
                ddp_barrier()


def _fsync(path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
