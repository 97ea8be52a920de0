"""Collapse monitoring for self-distillation: frame-level spread statistics and a guard.

A collapsed data2vec model predicts (and targets) nearly the same vector for every frame, while
the loss can look fine. fairseq logs ``target_var`` / ``pred_var`` (the mean over channels of the
per-channel std across frames) and aborts below 0.1 / 0.01 after update 5000. The CNN output can
collapse on its own while those stay healthy (fairseq issue #5239), so ``cnn_std`` is watched too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
import torch.distributed as dist

__all__ = ["frame_std", "CollapseMonitor"]

logger = logging.getLogger(__name__)


def frame_std(x: torch.Tensor) -> torch.Tensor:
    """Mean over channels of each channel's std across frames (fairseq ``compute_var``).

    ``sqrt(var_d + 1e-6)`` with the unbiased variance of channel ``d`` over all ``N`` frames,
    averaged over ``D``. When ``torch.distributed`` is initialised the frame count, sums and sums
    of squares are all-reduced first, so every rank returns the global value (every rank must
    call it, every step).

    Arguments
    ---------
    x : torch.Tensor
        ``(N, D)`` frames (any leading shape is flattened into ``N``).

    Returns
    -------
    torch.Tensor
        Scalar fp32, detached; NaN when fewer than 2 frames exist in total.
    """
    if x.dim() < 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    frames = x.detach().reshape(-1, x.shape[-1]).double()
    count = torch.full((1,), frames.shape[0], dtype=torch.float64, device=frames.device)
    # One packed vector -> one collective: [count, sum_d..., sum_sq_d...].
    stats = torch.cat([count, frames.sum(dim=0), frames.square().sum(dim=0)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stats)
    num_channels = x.shape[-1]
    total = stats[0]
    sums, sums_sq = stats[1 : 1 + num_channels], stats[1 + num_channels :]
    if total < 2:
        return torch.tensor(math.nan, device=x.device)
    var = (sums_sq - sums.square() / total) / (total - 1)
    return torch.sqrt(var.clamp_min(0.0) + 1e-6).mean().float()


class CollapseMonitor:
    """Warn about, or stop, a collapsing self-distillation run.

    Arguments
    ---------
    min_target_var : float | None
        Lowest healthy ``target_var`` (fairseq: 0.1); None disables the check.
    min_pred_var : float | None
        Lowest healthy ``pred_var`` (fairseq: 0.01); None disables the check.
    min_cnn_std : float | None
        Lowest healthy ``cnn_std`` (spread over time of the LayerNorm-ed CNN features, which the
        feature penalty cannot shrink); None disables the check.
    start_step : int
        Checks start at this optimiser step (statistics are meaningless at initialisation).
    action : str
        ``"warn"`` logs a warning, ``"abort"`` raises ``RuntimeError``.
    patience : int
        Consecutive failing checks needed before acting, to ignore a single odd batch.

    Example
    -------
    >>> monitor = CollapseMonitor(start_step=0, action="warn")
    >>> monitor.check(10, {"target_var": 0.5, "pred_var": 0.3})
    []
    """

    def __init__(
        self,
        min_target_var: float | None = 0.1,
        min_pred_var: float | None = 0.01,
        min_cnn_std: float | None = 0.01,
        start_step: int = 5000,
        action: str = "warn",
        patience: int = 1,
    ) -> None:
        if action not in ("warn", "abort"):
            raise ValueError(f"action must be 'warn' or 'abort', got {action!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.thresholds = {
            name: value
            for name, value in (
                ("target_var", min_target_var),
                ("pred_var", min_pred_var),
                ("cnn_std", min_cnn_std),
            )
            if value is not None
        }
        self.start_step = start_step
        self.action = action
        self.patience = patience
        self.consecutive_failures = 0

    def check(self, step: int, stats: Mapping[str, float | torch.Tensor]) -> list[str]:
        """Compare ``stats`` with the thresholds; act after ``patience`` failing checks in a row.

        Statistics missing from ``stats`` or not finite (too few frames) are skipped.

        Returns
        -------
        list[str]
            One description per statistic below its threshold (empty when healthy).
        """
        if step < self.start_step:
            return []
        problems = []
        for name, threshold in self.thresholds.items():
            if name not in stats:
                continue
            value = float(stats[name])
            if math.isfinite(value) and value < threshold:
                problems.append(f"{name} = {value:.4g} < {threshold:g}")
        self.consecutive_failures = self.consecutive_failures + 1 if problems else 0
        if problems and self.consecutive_failures >= self.patience:
            message = (
                f"representation collapse at step {step}: {', '.join(problems)} "
                f"({self.consecutive_failures} failing check(s) in a row). Try a lower learning "
                "rate or a longer warm-up, check that the EMA teacher is updated after every "
                "optimiser step with a decay below 1, and that targets are instance-normalised."
            )
            if self.action == "abort":
                raise RuntimeError(message)
            logger.warning(message)
        return problems
