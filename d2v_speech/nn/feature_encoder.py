"""Waveform conv feature encoder and the projection into the Transformer width.

Module and parameter names follow Hugging Face `Data2VecAudioFeatureEncoder` /
`Data2VecAudioFeatureProjection` so that state-dict keys match 1:1.
"""

from __future__ import annotations

import torch
from torch import nn

from d2v_speech.nn.config import EncoderConfig


class ConvBlock(nn.Module):
    """Conv1d -> optional norm -> GELU, on (B, C_in, S) -> (B, C_out, S').

    `norm` is "layer_norm" (LayerNorm over channels, per frame), "group_norm" (GroupNorm with one
    group per channel, i.e. per-channel normalisation over time) or None.
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
        self.norm_kind = norm
        if norm == "layer_norm":
            self.layer_norm = nn.LayerNorm(out_channels)
        elif norm == "group_norm":
            # HF wav2vec2 names the GroupNorm `layer_norm` too, which keeps the keys compatible
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm is not None:
            raise ValueError(f"unknown conv block norm {norm!r}")
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_kind == "layer_norm":
            # GELU on the contiguous (B, T, C) tensor: ~15% faster on CPU than after transposing
            x = self.activation(self.layer_norm(x.transpose(1, 2)))
            return x.transpose(1, 2).contiguous()
        if self.norm_kind == "group_norm":
            x = self.layer_norm(x)
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
        x = wav.unsqueeze(1)
        for block in self.conv_layers:
            x = block(x)
        return x.transpose(1, 2)


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
