"""data2vec 2.0's light decoder: grouped 1-D convolutions over the full sequence, then a Linear.

Each block is Conv1d(kernel, groups) -> LayerNorm over channels (no affine) -> GELU; a block whose
input and output widths match adds its input (fairseq ``Decoder1d`` with ``decoder_residual``:
the first block, D -> decoder_dim, has no residual). A final Linear maps back to D. The decoder
sees every frame (the student's outputs at kept frames, placeholders elsewhere) and predicts the
teacher targets at the masked ones.

Padded frames are re-zeroed before every block, so an utterance in a padded batch gets exactly
the output it gets alone (fairseq never pads in pretraining; its convs would see padding).

Example
-------
>>> import torch
>>> decoder = ConvDecoder1d(embed_dim=32, decoder_dim=16, kernel=3, num_layers=2, groups=4)
>>> decoder(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvDecoderBlock", "ConvDecoder1d"]


class ConvDecoderBlock(nn.Module):
    """Conv1d(in -> out, kernel, groups, 'same') -> LayerNorm(out, no affine) -> GELU; (N, C, T)."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, groups: int):
        super().__init__()
        if in_dim % groups or out_dim % groups:
            raise ValueError(
                f"decoder widths {in_dim} -> {out_dim} must be divisible by groups={groups}"
            )
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, padding=kernel // 2, groups=groups)
        # 'same' padding k // 2 on both sides yields one extra frame for an even kernel
        self.trim_last = kernel % 2 == 0
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.trim_last:
            x = x[:, :, :-1]
        x = F.layer_norm(x.transpose(1, 2), (self.out_dim,)).transpose(1, 2)
        return F.gelu(x)


class ConvDecoder1d(nn.Module):
    """(N, T, D) -> (N, T, D) predictions.

    Arguments
    ---------
    embed_dim : int
        Width D of the encoder (input and output).
    decoder_dim : int
        Channels of every block (BASE: 384).
    kernel, num_layers, groups : int
        Conv kernel (7), number of blocks (4) and groups (16).
    residual : bool
        Add each block's input where the widths match.
    """

    def __init__(
        self,
        embed_dim: int,
        decoder_dim: int = 384,
        kernel: int = 7,
        num_layers: int = 4,
        groups: int = 16,
        residual: bool = True,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        widths = [embed_dim] + [decoder_dim] * num_layers
        self.blocks = nn.ModuleList(
            [ConvDecoderBlock(widths[i], widths[i + 1], kernel, groups) for i in range(num_layers)]
        )
        self.proj = nn.Linear(decoder_dim, embed_dim)
        self.residual = residual
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, T, D), padding_mask (N, T) bool (True = padded) -> (N, T, D)."""
        keep = None if padding_mask is None else (~padding_mask).unsqueeze(1).to(x.dtype)
        x = x.transpose(1, 2)
        for block in self.blocks:
            if keep is not None:
                x = x * keep
            out = block(x)
            x = out + x if self.residual and out.shape == x.shape else out
        return self.proj(x.transpose(1, 2))
