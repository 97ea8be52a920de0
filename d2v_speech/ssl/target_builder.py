"""Target builder part: the average of the teacher's top-K FFN outputs, each instance-normalised.

A YAML passes one to an objective::

    target_builder: !new:d2v_speech.ssl.target_builder.TopKTargetBuilder
        top_k: 8
        instance_norm: True

Example
-------
>>> import torch
>>> builder = TopKTargetBuilder(top_k=2)
>>> layers = [torch.randn(1, 5, 3) for _ in range(4)]
>>> builder(layers).shape
torch.Size([1, 5, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from d2v_speech.ssl.targets import build_targets

__all__ = ["TopKTargetBuilder"]


class TopKTargetBuilder:
    """Regression targets from a teacher's per-layer FFN outputs (data2vec 1.0 and 2.0 alike).

    Arguments
    ---------
    top_k : int
        The last ``top_k`` layers are averaged (BASE: 8; the tiny recipes: 2).
    instance_norm : bool
        Instance-normalise each layer over time first (fairseq ``instance_norm_target_layer``).
    """

    def __init__(self, top_k: int = 8, instance_norm: bool = True) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self.top_k = top_k
        self.instance_norm = bool(instance_norm)

    def check_layers(self, num_layers: int) -> None:
        """Raise a ValueError when a teacher of ``num_layers`` layers has fewer than ``top_k``."""
        if self.top_k > num_layers:
            raise ValueError(
                f"top_k={self.top_k} teacher layers requested, but the model has {num_layers}"
            )

    def __call__(
        self,
        ffn_outputs: Sequence[torch.Tensor | None],
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L tensors (B, T, D), padding_mask (B, T) True = pad -> fp32 targets (B, T, D)."""
        return build_targets(
            ffn_outputs, self.top_k, padding_mask, instance_norm=self.instance_norm
        )

    def __repr__(self) -> str:
        return f"TopKTargetBuilder(top_k={self.top_k}, instance_norm={self.instance_norm})"
