"""ALiBi attention bias of data2vec 2.0: ``-slope_h * |i - j|``, scaled by a learned value per head.

The slopes are the ALiBi paper's geometric sequence (Press et al., 2022): for H a power of two,
``2^(-8 (h + 1) / H)``; otherwise those of the largest power of two below H, then every other
slope of twice that power. For H = 12 this gives ``2^-1 .. 2^-8`` then ``2^-0.5, 2^-1.5, 2^-2.5,
2^-3.5`` (fairseq ``get_alibi``). data2vec 2.0 multiplies the bias by ``clamp_min(scale, 0)``, one
learned scale per head shared by all layers, initialised to 1.

The bias depends only on frame positions, so the sparse student of data2vec 2.0 computes it
directly for the positions it keeps (equal to gathering rows and columns of the full T x T bias).

Example
-------
>>> alibi_slopes(4).tolist()
[0.25, 0.0625, 0.015625, 0.00390625]
>>> bias = alibi_bias(torch.arange(3).unsqueeze(0), torch.tensor([0.5]), torch.ones(1))
>>> bias[0, 0]
tensor([[-0.0000, -0.5000, -1.0000],
        [-0.5000, -0.0000, -0.5000],
        [-1.0000, -0.5000, -0.0000]])
"""

from __future__ import annotations

import math

import torch

__all__ = ["alibi_slopes", "alibi_bias"]


def _power_of_two_slopes(num_heads: int) -> list[float]:
    start = 2.0 ** (-8.0 / num_heads)
    return [start ** (index + 1) for index in range(num_heads)]


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """(H,) fp32 slopes, largest first for a power of two."""
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    if math.log2(num_heads).is_integer():
        return torch.tensor(_power_of_two_slopes(num_heads), dtype=torch.float32)
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = _power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(_power_of_two_slopes(closest) + extra, dtype=torch.float32)


def alibi_bias(positions: torch.Tensor, slopes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Additive attention bias for frames at ``positions``.

    Arguments
    ---------
    positions : LongTensor (N, T')
        Time index (in the full sequence) of each query/key frame of every row.
    slopes : Tensor (H,)
        :func:`alibi_slopes`.
    scale : Tensor (H,)
        Learned per-head scale; negative values act as 0.

    Returns
    -------
    Tensor (N, H, T', T') fp32: ``-slope_h * clamp_min(scale_h, 0) * |p_i - p_j|``.
    """
    distance = (positions.unsqueeze(2) - positions.unsqueeze(1)).abs().float()
    per_head = slopes.to(distance.device) * scale.float().clamp_min(0.0)
    return -per_head.view(1, -1, 1, 1) * distance.unsqueeze(1)
