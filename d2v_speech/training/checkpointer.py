"""A SpeechBrain Checkpointer that a SIGKILL can never leave half-written.

SpeechBrain writes a checkpoint's `CKPT.yaml` (which marks the folder as a checkpoint) before the
recoverables, so a kill during saving leaves a folder that looks complete but is not. Here the
meta file is written under a temporary name and renamed into place only after every
recoverable is on disk; folders without it are ignored on recovery and removed later.
"""

from __future__ import annotations

import os
import shutil

from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)
PARTIAL_SUFFIX = ".partial"


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

    def recover_if_possible(self, *args, **kwargs):
        self.remove_incomplete()
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)


def _fsync(path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
