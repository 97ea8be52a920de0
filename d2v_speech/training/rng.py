"""Random-number-generator states as a SpeechBrain recoverable, for exact resume."""

from __future__ import annotations

import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks


@register_checkpoint_hooks
class RNGStates:
    """Saves and restores the python, numpy, torch (CPU) and CUDA generators of this process.

    Each DDP rank saves its own file (`rng_states.ckpt` gets a rank suffix) so that every rank
    resumes with the same random stream it would have had.
    """

    @staticmethod
    def _rank_path(path):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")

    @mark_as_saver
    def save(self, path):
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(state, self._rank_path(path))

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        del end_of_epoch
        rank_path = self._rank_path(path)
        state = torch.load(rank_path if rank_path.exists() else path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
