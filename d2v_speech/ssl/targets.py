"""data2vec regression targets: instance-normalised, averaged top-K teacher FFN outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["instance_norm_over_time", "build_targets"]


def _check_padding_mask(x: torch.Tensor, padding_mask: torch.Tensor | None) -> None:
    if padding_mask is None:
        return
    if padding_mask.shape != x.shape[:2]:
        raise ValueError(
            f"padding_mask must have shape {tuple(x.shape[:2])} (B, T), "
            f"got {tuple(padding_mask.shape)}"
        )
    if padding_mask.dtype != torch.bool:
        raise ValueError(
            f"padding_mask must be a bool tensor (True = pad), got {padding_mask.dtype}"
        )


def instance_norm_over_time(
    x: torch.Tensor, padding_mask: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Normalise every channel of every utterance over its valid frames, in fp32.

    Same as ``F.instance_norm`` on ``(B, D, T)`` (biased variance, no affine) when there is no
    padding; with padding, statistics use valid frames only, so padding never changes them.

    Arguments
    ---------
    x : torch.Tensor
        ``(B, T, D)`` features.
    padding_mask : torch.BoolTensor | None
        ``(B, T)``, True = padded frame.
    eps : float
        Added to the variance.

    Returns
    -------
    torch.Tensor
        ``(B, T, D)`` fp32; padded frames are 0.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, D), got shape {tuple(x.shape)}")
    _check_padding_mask(x, padding_mask)
    x = x.float()
    if padding_mask is None:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps)
    valid = (~padding_mask).unsqueeze(-1).float()
    count = valid.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean = (x * valid).sum(dim=1, keepdim=True) / count
    centred = (x - mean) * valid
    var = centred.square().sum(dim=1, keepdim=True) / count
    return centred * torch.rsqrt(var + eps)


def build_targets(
    ffn_outputs: Sequence[torch.Tensor | None],
    top_k: int,
    padding_mask: torch.Tensor | None = None,
    instance_norm: bool = True,
) -> torch.Tensor:
    """Average the last ``top_k`` layers' FFN outputs, each instance-normalised over time.

    Arguments
    ---------
    ffn_outputs : Sequence[torch.Tensor | None]
        One ``(B, T, D)`` tensor per layer, first layer first (None for a dropped layer, which
        is an error if it falls in the top ``top_k``).
    top_k : int
        How many of the last layers to average (data2vec Base: 8).
    padding_mask : torch.BoolTensor | None
        ``(B, T)``, True = padded frame.
    instance_norm : bool
        Instance-normalise each layer before averaging (fairseq ``instance_norm_target_layer``).

    Returns
    -------
    torch.Tensor
        ``(B, T, D)`` fp32 targets; padded frames are 0.
    """
    if not 1 <= top_k <= len(ffn_outputs):
        raise ValueError(f"top_k must be in [1, {len(ffn_outputs)}] (the layer count), got {top_k}")
    first = len(ffn_outputs) - top_k
    layers = list(ffn_outputs[first:])
    for offset, layer in enumerate(layers):
        if layer is None:
            raise ValueError(
                f"layer {first + offset} has no FFN output (dropped by LayerDrop?); the teacher "
                "must run in eval mode"
            )
    total = None
    for layer in layers:
        if instance_norm:
            layer = instance_norm_over_time(layer, padding_mask)
        else:
            _check_padding_mask(layer, padding_mask)
            layer = layer.float()
            if padding_mask is not None:
                layer = layer.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        total = layer if total is None else total + layer
    return total / top_k
