"""Per-frame regression loss of data2vec (L2 or smooth L1, summed over channels, scaled)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["regression_loss"]


def regression_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    loss_beta: float = 0.0,
    loss_scale: float | None = None,
) -> torch.Tensor:
    """Loss of each predicted frame against its target, computed in fp32.

    ``loss_beta == 0``: squared error summed over ``D``; ``loss_beta > 0``: smooth L1 with that
    ``beta`` summed over ``D``. Either is multiplied by ``loss_scale``, or ``1 / sqrt(D)`` when it
    is None (data2vec's default). Average the result over frames for the training loss.

    Arguments
    ---------
    pred : torch.Tensor
        ``(N, D)`` predictions at masked frames.
    target : torch.Tensor
        ``(N, D)`` targets.
    loss_beta : float
        0 for L2, else the smooth-L1 transition point.
    loss_scale : float | None
        Multiplier; None means ``1 / sqrt(D)``.

    Returns
    -------
    torch.Tensor
        ``(N,)`` fp32 loss per frame.
    """
    if pred.dim() != 2 or pred.shape != target.shape:
        raise ValueError(
            "pred and target must both be (N, D), "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if loss_beta < 0:
        raise ValueError(f"loss_beta must be >= 0, got {loss_beta}")
    pred, target = pred.float(), target.float()
    if loss_beta == 0:
        per_frame = (pred - target).square().sum(dim=-1)
    else:
        per_frame = F.smooth_l1_loss(pred, target, reduction="none", beta=loss_beta).sum(dim=-1)
    scale = 1.0 / math.sqrt(pred.shape[-1]) if loss_scale is None else loss_scale
    return per_frame * scale
