"""SUPERB's featurizer: a softmax-weighted sum of layer-normalised hidden states."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LayerWeightedSum"]


class LayerWeightedSum(nn.Module):
    """(B, L + 1, T, D) -> (B, T, D): each layer layer-normalised (no affine), then summed with
    softmax weights that start equal (Yang et al., 2021, SUPERB)."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.weights, dim=0)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        if layers.shape[1] != self.weights.numel():
            raise ValueError(
                f"expected {self.weights.numel()} layers in dim 1, got shape {tuple(layers.shape)}"
            )
        normed = nn.functional.layer_norm(layers, layers.shape[-1:])
        return torch.einsum("l,bltd->btd", self.layer_weights(), normed)
