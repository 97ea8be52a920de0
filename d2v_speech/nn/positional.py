"""Convolutional relative positional embedding of data2vec (a stack of grouped convs).

Names follow Hugging Face `Data2VecAudioPositionalConvEmbedding`
(`pos_conv_embed.layers.{i}.conv`), so state-dict keys match 1:1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PositionalConvLayer(nn.Module):
    """Conv1d(D, D, k, groups, 'same' padding) -> LayerNorm(D, no affine) -> GELU; (B, D, T)."""

    def __init__(self, embed_dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(embed_dim, embed_dim, kernel, padding=kernel // 2, groups=groups)
        # padding k // 2 on both sides yields one extra frame for an even kernel
        self.trim_last = kernel % 2 == 0
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.trim_last:
            x = x[:, :, :-1]
        x = F.layer_norm(x.transpose(1, 2), (self.embed_dim,)).transpose(1, 2)
        return F.gelu(x)


class PositionalConvEmbedding(nn.Module):
    """`depth` stacked `PositionalConvLayer`s; (B, T, D) -> positional term (B, T, D).

    The caller adds the result to its input (one residual around the whole stack).
    """

    def __init__(self, embed_dim: int, depth: int, kernel: int, groups: int, mask_padding: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            [PositionalConvLayer(embed_dim, kernel, groups) for _ in range(depth)]
        )
        self.mask_padding = mask_padding

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) with padded frames already zero; padding_mask (B, T) bool, True = padded."""
        keep = None
        if padding_mask is not None and self.mask_padding:
            keep = (~padding_mask).unsqueeze(1).to(x.dtype)
        x = x.transpose(1, 2)
        for index, layer in enumerate(self.layers):
            # the first layer sees the already-zeroed input; later ones would see GELU(LN(.)) != 0
            if keep is not None and index > 0:
                x = x * keep
            x = layer(x)
        return x.transpose(1, 2)
