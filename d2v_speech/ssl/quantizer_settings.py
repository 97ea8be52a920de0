"""Quantizer part of data2vec-aqc: a Gumbel product quantizer of the CNN features and ``project_q``.

The part holds the settings; the objective calls :meth:`QuantizerSettings.build` with the
model's CNN width and registers the two modules as ``objective.quantizer`` and
``objective.project_q`` (the fork's state-dict keys, which checkpoints rely on)::

    quantizer: !new:d2v_speech.ssl.quantizer_settings.QuantizerSettings
        num_vars: 320
        groups: 2
        vq_dim: 256                       # the fork's final_dim: also the contrastive space
        temperature: [2.0, 0.5, 0.999995]

Example
-------
>>> import torch
>>> settings = QuantizerSettings(num_vars=8, groups=2, vq_dim=4)
>>> quantizer, project_q = settings.build(input_dim=6)
>>> mask = torch.tensor([[1, 1, 0], [0, 1, 1]]).bool()
>>> q, out = settings.quantize_masked(quantizer.eval(), project_q, torch.randn(2, 3, 6), mask, 2)
>>> q.shape, out.codes.shape
(torch.Size([2, 2, 4]), torch.Size([2, 2, 2]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from d2v_speech.nn.quantizer import GumbelVectorQuantizer, QuantizerOutput

__all__ = ["QuantizerSettings"]


class QuantizerSettings:
    """Settings of :class:`~d2v_speech.nn.quantizer.GumbelVectorQuantizer` plus ``project_q``.

    Arguments
    ---------
    num_vars : int
        Codebook entries per group (fork: 320).
    groups : int
        Number of codebooks (fork: 2).
    vq_dim : int
        Size of the quantized vectors, of ``project_q`` and of the contrastive space (fork
        ``final_dim`` 256).
    temperature : sequence of 3 floats
        Gumbel temperature start, end and decay per update (fork: 2, 0.5, 0.999995).
    combine_groups : bool
        All groups share one codebook.
    gumbel_noise : str
        "exponential" (the fork's noise stream) or "uniform" (the same Gumbel law, drawn about
        5x faster on a CPU; :func:`~d2v_speech.nn.quantizer.sample_gumbel`).
    """

    def __init__(
        self,
        num_vars: int = 320,
        groups: int = 2,
        vq_dim: int = 256,
        temperature: Sequence[float] = (2.0, 0.5, 0.999995),
        combine_groups: bool = False,
        gumbel_noise: str = "exponential",
    ) -> None:
        self.num_vars = int(num_vars)
        self.groups = int(groups)
        self.vq_dim = int(vq_dim)
        self.temperature = tuple(float(t) for t in temperature)
        self.combine_groups = bool(combine_groups)
        self.gumbel_noise = gumbel_noise

    def build(self, input_dim: int) -> tuple[GumbelVectorQuantizer, nn.Linear]:
        """Fresh (quantizer of ``input_dim`` channels, ``project_q`` Linear(vq_dim, vq_dim))."""
        quantizer = GumbelVectorQuantizer(
            input_dim=input_dim,
            num_vars=self.num_vars,
            groups=self.groups,
            vq_dim=self.vq_dim,
            temperature=self.temperature,
            combine_groups=self.combine_groups,
            gumbel_noise=self.gumbel_noise,
        )
        return quantizer, nn.Linear(self.vq_dim, self.vq_dim)

    @staticmethod
    def quantize_masked(
        quantizer: GumbelVectorQuantizer,
        project_q: nn.Module,
        normed: torch.Tensor,
        mask: torch.Tensor,
        frames_per_row: int,
    ) -> tuple[torch.Tensor, QuantizerOutput]:
        """normed CNN features (B, T, C) at ``mask`` (B, T), ``frames_per_row`` M in every row ->
        (projected codes (B, M, vq_dim), the quantizer's output)."""
        masked = normed[mask].view(normed.shape[0], frames_per_row, normed.shape[-1])
        quantizer_out = quantizer(masked)
        return project_q(quantizer_out.quantized), quantizer_out

    def __repr__(self) -> str:
        return (
            f"QuantizerSettings(num_vars={self.num_vars}, groups={self.groups}, "
            f"vq_dim={self.vq_dim}, temperature={list(self.temperature)}, "
            f"combine_groups={self.combine_groups}, gumbel_noise={self.gumbel_noise!r})"
        )
