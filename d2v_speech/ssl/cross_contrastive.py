"""Cross-contrastive head of data2vec-aqc: ``contr_proj`` and the two cluster-scaled InfoNCE terms.

The student's masked outputs are contrasted with the clean view's codes, the teacher's targets
with the augmented view's codes (Lodagala et al., ICASSP 2023)::

    loss_s = CE(contr_proj(student[mask]); q_clean, clean negatives) / num_masked
    loss_t = CE(contr_proj(targets[mask]); q_aug, aug negatives) / num_masked
    loss += weights[0] * loss_s + weights[1] * loss_t

The objective calls :meth:`CrossContrastiveHead.build` and registers the Linear as
``objective.contr_proj`` (the fork's state-dict key)::

    contrastive_head: !new:d2v_speech.ssl.cross_contrastive.CrossContrastiveHead
        weights: [0.5, 0.5]               # student -> clean, teacher -> augmented
        logit_temperature: 0.1
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from d2v_speech.ssl.cluster_scaler import ClusterScaler
from d2v_speech.ssl.contrastive import within_utterance_contrastive_loss

__all__ = ["CrossContrastiveHead"]


class CrossContrastiveHead:
    """Settings of the cross-contrastive terms and the recipe of their projection.

    Arguments
    ---------
    weights : sequence of 2 floats
        Weights of the student -> clean and teacher -> augmented terms (fork: 0.5, 0.5).
    logit_temperature : float
        Cosine similarities are divided by it (fork: 0.1).
    """

    def __init__(
        self, weights: Sequence[float] = (0.5, 0.5), logit_temperature: float = 0.1
    ) -> None:
        if len(weights) != 2:
            raise ValueError(f"weights needs 2 values, got {weights}")
        if logit_temperature <= 0:
            raise ValueError(f"logit_temperature must be > 0, got {logit_temperature}")
        self.weights = tuple(float(w) for w in weights)
        self.logit_temperature = float(logit_temperature)

    def build(self, embed_dim: int, code_dim: int) -> nn.Linear:
        """A fresh ``contr_proj``: Linear from the encoder's width to the codes' (vq_dim)."""
        return nn.Linear(embed_dim, code_dim)

    def info_nce(
        self,
        anchor: torch.Tensor,
        candidates: torch.Tensor,
        neg_index: torch.Tensor,
        same_cluster: torch.Tensor,
        scaler: ClusterScaler,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cluster-scaled InfoNCE of anchors (B, M, C) against candidates (B, M, C).

        Negative n of frame (b, m) is ``candidates[b, neg_index[n, b, m]]``; ``same_cluster``
        (N, B, M) marks those to down-weight. Returns (sum over frames, stats).
        """
        return within_utterance_contrastive_loss(
            anchor,
            candidates,
            neg_index,
            same_cluster,
            scale_factor=scaler.scale_factor,
            logit_temperature=self.logit_temperature,
            official_cluster_scaling=scaler.official_cluster_scaling,
        )

    def __repr__(self) -> str:
        return (
            f"CrossContrastiveHead(weights={list(self.weights)}, "
            f"logit_temperature={self.logit_temperature})"
        )
