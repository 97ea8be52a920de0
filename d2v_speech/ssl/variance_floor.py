"""The variance floor: a VICReg-style hinge that keeps the encoder input varying over time.

On the tiny CPU runs, data2vec's regression loss can be lowered without any information about
the audio: the CNN emits nearly the same vector for every frame, the teacher's targets become
smooth functions of position, and the student interpolates them (``cnn_std`` 0.6 -> 0.01 in a
few hundred updates; docs/experiments/2026-12-03b_variance_floor_and_ssl_gain.md). The floor
asks each channel of the frame-normalised encoder input to vary over the frames of an utterance
by at least ``floor`` (std), and pushes only on the channels below it (Bardes et al., VICReg,
2022). Both data2vec engines use it; 0 switches it off (fairseq has none).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_variance_floor", "temporal_spread", "variance_floor_terms"]


def check_variance_floor(floor: float, weight: float) -> tuple[float, float]:
    """(floor, weight) as floats after checking both are >= 0."""
    if floor < 0 or weight < 0:
        raise ValueError(f"variance_floor and variance_weight must be >= 0, got {floor}, {weight}")
    return float(floor), float(weight)


def temporal_spread(local: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Per-utterance, per-channel std over time of the frame-normalised encoder input.

    local (B, T, D) -> (B, D). Each frame is layer-normalised first (no affine), so the value is
    the share of a frame that changes over time, whatever the features' scale; padded frames are
    left out. Differentiable: the variance floor trains on it.
    """
    x = nn.functional.layer_norm(local.float(), local.shape[-1:])
    if padding_mask is None:
        return x.var(dim=1).add(1e-6).sqrt()
    valid = (~padding_mask).unsqueeze(-1).to(x.dtype)
    count = valid.sum(1)
    mean = (x * valid).sum(1) / count.clamp_min(1.0)
    var = ((x - mean.unsqueeze(1)).square() * valid).sum(1) / (count - 1).clamp_min(1.0)
    return var.add(1e-6).sqrt()


def variance_floor_terms(
    local: torch.Tensor, padding_mask: torch.Tensor | None, floor: float
) -> dict[str, torch.Tensor]:
    """``input_std`` (mean :func:`temporal_spread`, detached) and ``variance_hinge``
    (``mean(relu(floor - spread))`` over utterances and channels, with grad) of local (B, T, D).

    Example
    -------
    >>> local = torch.zeros(1, 5, 4)  # a constant input: no spread at all
    >>> terms = variance_floor_terms(local, None, floor=0.5)
    >>> round(float(terms["variance_hinge"]), 3)
    0.499
    """
    spread = temporal_spread(local, padding_mask)
    return {
        "input_std": spread.detach().mean(),
        "variance_hinge": (floor - spread).clamp_min(0.0).mean(),
    }
