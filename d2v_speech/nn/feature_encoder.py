"""Waveform conv feature encoder and the projection into the Transformer width.

Module and parameter names follow Hugging Face `Data2VecAudioFeatureEncoder` /
`Data2VecAudioFeatureProjection` so that state-dict keys match 1:1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from d2v_speech.nn.config import EncoderConfig


class ConvBlock(nn.Module):
    """Conv1d -> optional norm -> GELU on channels-last frames, (B, S, C_in) -> (B, S', C_out).

    `norm` is "layer_norm" (LayerNorm over channels, per frame), "group_norm" (GroupNorm with one
    group per channel, i.e. per-channel normalisation over time) or None.

    The convolution runs as one matmul over gathered windows in (B, T, C) layout, which is what
    LayerNorm over channels wants: no (B, C, T) <-> (B, T, C) transposes. On one CPU thread,
    forward + backward of the whole CNN on 4 s clips went from 1.60 to 0.62 s (tiny, 8 clips)
    and from 4.96 to 2.21 s (BASE, 4 clips) against Conv1d with transposes. ``self.conv`` keeps
    the Conv1d weight (and its state-dict keys); the results equal Conv1d's up to float rounding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        bias: bool,
        norm: str | None,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.kernel, self.stride = kernel, stride
        self.norm_kind = norm
        if norm == "layer_norm":
            self.layer_norm = nn.LayerNorm(out_channels)
        elif norm == "group_norm":
            # HF wav2vec2 names the GroupNorm `layer_norm` too, which keeps the keys compatible
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm is not None:
            raise ValueError(f"unknown conv block norm {norm!r}")
        self.activation = nn.GELU()

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Valid, strided Conv1d on (B, S, C_in) -> (B, S', C_out) as window gather + matmul."""
        batch, steps, in_channels = x.shape
        frames = (steps - self.kernel) // self.stride + 1
        if frames < 1:
            raise ValueError(
                f"conv block input has {steps} steps, fewer than its kernel ({self.kernel})"
            )
        starts = torch.arange(frames, device=x.device) * self.stride
        taps = (starts.unsqueeze(1) + torch.arange(self.kernel, device=x.device)).reshape(-1)
        # index_select rather than unfold: its backward (index_add) is ~3x cheaper on CPU than
        # unfold's; each window is flattened tap-major (k, C_in), like the permuted weight
        windows = x.index_select(1, taps).view(batch, frames, self.kernel * in_channels)
        weight = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)
        return F.linear(windows, weight, self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convolve(x)
        if self.norm_kind == "layer_norm":
            x = self.layer_norm(x)
        elif self.norm_kind == "group_norm":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """Stack of `ConvBlock`s turning a waveform (B, S) into frames (B, T, C_cnn)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.conv_layer_specs = list(config.conv_layers)
        blocks = []
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(config.conv_layers):
            if config.extractor_mode == "layer_norm":
                norm = "layer_norm"
            else:
                norm = "group_norm" if index == 0 else None
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, config.conv_bias, norm))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames per utterance, floor((L - k) / s) + 1 per layer (min 0); (B,) -> (B,)."""
        lengths = sample_lengths.to(torch.long)
        for _, kernel, stride in self.conv_layer_specs:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
            lengths = lengths.clamp(min=0)
        return lengths

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, S) waveform -> (B, T, C_cnn) raw CNN features (after the last GELU)."""
        x = wav.unsqueeze(-1)
        for block in self.conv_layers:
            x = block(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm(C_cnn) -> Linear(C_cnn -> D), plus the input dropout applied by the caller."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.cnn_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.cnn_dim, config.embed_dim)
        self.dropout = nn.Dropout(config.feature_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C_cnn) -> (normed (B, T, C_cnn), projected (B, T, D)); no dropout here."""
        normed = self.layer_norm(features)
        return normed, self.projection(normed)
