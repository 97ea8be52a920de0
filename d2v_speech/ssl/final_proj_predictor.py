"""Predictor part of data2vec 1.0: ``final_proj``, one Linear(D, D) on the student's masked frames.

The part is a recipe for the head, not the head itself: the objective calls :meth:`build` with
the model's width and registers the Linear as ``objective.final_proj``, so the state-dict key
stays ``final_proj.weight`` (fairseq's name, which checkpoints and warm starts rely on)::

    predictor: !new:d2v_speech.ssl.final_proj_predictor.FinalProjPredictor

Example
-------
>>> import torch
>>> predictor = FinalProjPredictor()
>>> final_proj = predictor.build(embed_dim=8)
>>> hidden, mask = torch.randn(2, 5, 8), torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]]).bool()
>>> predictor.predict(final_proj, hidden, mask).shape
torch.Size([3, 8])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FinalProjPredictor"]


class FinalProjPredictor:
    """data2vec 1.0's prediction head: a Linear from the student's width to the target's."""

    def build(self, embed_dim: int) -> nn.Linear:
        """A fresh ``nn.Linear(embed_dim, embed_dim)`` (targets have the encoder's width)."""
        return nn.Linear(embed_dim, embed_dim)

    @staticmethod
    def predict(head: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Student states (B, T, D) at ``mask`` (B, T) -> predictions (N_masked, D), b-major."""
        return head(hidden[mask])

    def __repr__(self) -> str:
        return "FinalProjPredictor()"
