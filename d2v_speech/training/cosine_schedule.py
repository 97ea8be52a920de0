"""data2vec 2.0's learning-rate schedule: linear warm-up from 0, then a half cosine to a floor.

fairseq ``cosine`` with ``warmup_init_lr`` 0 and one period: for update t,

* ``t < W``: ``lr * t / W``;
* ``W <= t < N``: ``floor + (lr - floor) * (1 + cos(pi * (t - W) / (N - W))) / 2``;
* ``t >= N``: ``floor``.

The value is a pure function of the update count, so a resumed run continues it exactly, and
it is called as ``schedule(optimizer, num_updates)`` like SpeechBrain's ``TriStageLRSchedule``.

Example
-------
>>> schedule = WarmupCosineLRSchedule(lr=1.0, warmup_steps=10, total_steps=110)
>>> [round(schedule.lr_at(t), 3) for t in (0, 5, 10, 60, 110)]
[0.0, 0.5, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math

import torch

__all__ = ["WarmupCosineLRSchedule"]


class WarmupCosineLRSchedule:
    """Linear warm-up, half-cosine decay (see the module docstring).

    Arguments
    ---------
    lr : float
        Peak learning rate (data2vec 2.0 BASE: 7.5e-4).
    warmup_steps : int
        Updates of linear warm-up from 0 (BASE: 8000).
    total_steps : int
        Update at which the cosine reaches the floor (BASE: 400000).
    final_lr_scale : float
        Floor as a fraction of ``lr`` (fairseq ``min_lr`` 0).
    """

    def __init__(
        self, lr: float, warmup_steps: int, total_steps: int, final_lr_scale: float = 0.0
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
            )
        if not 0.0 <= final_lr_scale <= 1.0:
            raise ValueError(f"final_lr_scale must be in [0, 1], got {final_lr_scale}")
        self.lr = float(lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.final_lr = self.lr * final_lr_scale

    def lr_at(self, num_updates: int) -> float:
        """Learning rate of update ``num_updates``."""
        if num_updates < self.warmup_steps:
            return self.lr * num_updates / self.warmup_steps
        if num_updates >= self.total_steps:
            return self.final_lr
        progress = (num_updates - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr + (self.lr - self.final_lr) * cosine

    def __call__(self, opt: torch.optim.Optimizer, num_updates: int) -> float:
        """Set every parameter group's lr for update ``num_updates``; returns it."""
        value = self.lr_at(num_updates)
        for group in opt.param_groups:
            group["lr"] = value
        return value
