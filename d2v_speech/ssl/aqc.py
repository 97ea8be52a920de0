"""The data2vec-aqc objective: data2vec + augmentation, a Gumbel quantizer, k-means and a
cluster-aware cross-contrastive loss (Lodagala et al., ICASSP 2023).

One training step on a clean batch and its augmented copy (same length, same crop)::

    clean, aug = frontend(wav), frontend(wav_aug)        # shared CNN + projection, both views
    mask = masker (same count per row)                   # one mask for both views
    student = encoder(mask(aug.projected))               # the student sees the augmented view
    targets = teacher(clean.projected)                   # the EMA teacher sees the clean one
    regression: final_proj(student[mask]) vs targets[mask]           (data2vec)
    q_clean, q_aug = project_q(quantizer(normed[mask])) per view     (B, M, 256)
    negatives: 100 other masked frames of the same utterance, per view
    k-means over both views' normalised q -> same-cluster negatives are down-weighted
    loss_s = CE(contr_proj(student[mask]); q_clean, clean negatives)
    loss_t = CE(contr_proj(targets[mask]); q_aug, aug negatives)
    loss = regression + 0.5 loss_s + 0.5 loss_t + 0.1 diversity + 10 feature penalty

It runs on the :mod:`~d2v_speech.ssl.data2vec1_engine` (masker, teacher, target builder and
predictor parts) and adds four parts: ``quantizer``
(:class:`~d2v_speech.ssl.quantizer_settings.QuantizerSettings`: ``quantizer`` and ``project_q``),
``negative_sampler`` (:class:`~d2v_speech.ssl.negative_sampler.NegativeSampler`),
``cluster_scaler`` (:class:`~d2v_speech.ssl.cluster_scaler.ClusterScaler` with its k-means
backend) and ``contrastive_head``
(:class:`~d2v_speech.ssl.cross_contrastive.CrossContrastiveHead`: ``contr_proj`` and the weights).

Every loss term is a mean over masked frames (the fork sums and divides the gradient by the
masked-frame count, which is the same thing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.quantizer import QuantizerOutput
from d2v_speech.ssl.aqc_terms import AQCTerms, codes_in_use
from d2v_speech.ssl.cluster_scaler import ClusterScaler, CosineKMeans
from d2v_speech.ssl.cross_contrastive import CrossContrastiveHead
from d2v_speech.ssl.data2vec1_engine import (
    V1_PART_DEFAULTS,
    V1_SHORTHANDS,
    Data2Vec1Engine,
    FrontendOutput,
    compose_parts,
)
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.final_proj_predictor import FinalProjPredictor
from d2v_speech.ssl.negative_sampler import NegativeSampler
from d2v_speech.ssl.quantizer_settings import QuantizerSettings
from d2v_speech.ssl.span_masker import SpanMasker
from d2v_speech.ssl.target_builder import TopKTargetBuilder

__all__ = ["AQC_PART_DEFAULTS", "AQC_SHORTHANDS", "AQCObjective", "codes_in_use"]


def _default_cluster_scaler(
    kmeans_backend: str = "auto", kmeans_iters: int = 20, **fields: Any
) -> ClusterScaler:
    return ClusterScaler(kmeans=CosineKMeans(kmeans_backend, kmeans_iters), **fields)


# flat keyword of the first API -> (part, field of that part's factory)
AQC_SHORTHANDS: dict[str, tuple[str, str]] = {
    **V1_SHORTHANDS,
    "latent_vars": ("quantizer", "num_vars"),
    "latent_groups": ("quantizer", "groups"),
    "latent_temperature": ("quantizer", "temperature"),
    "final_dim": ("quantizer", "vq_dim"),
    "num_negatives": ("negative_sampler", "num_negatives"),
    "cluster_factor": ("cluster_scaler", "cluster_factor"),
    "cluster_size_from": ("cluster_scaler", "cluster_size_from"),
    "scale_factor": ("cluster_scaler", "scale_factor"),
    "official_cluster_scaling": ("cluster_scaler", "official_cluster_scaling"),
    "kmeans_backend": ("cluster_scaler", "kmeans_backend"),
    "kmeans_iters": ("cluster_scaler", "kmeans_iters"),
    "logit_temperature": ("contrastive_head", "logit_temperature"),
    "contrastive_weights": ("contrastive_head", "weights"),
}
AQC_PART_DEFAULTS: dict[str, Callable[..., Any]] = {
    **V1_PART_DEFAULTS,
    "quantizer": QuantizerSettings,
    "negative_sampler": NegativeSampler,
    "cluster_scaler": _default_cluster_scaler,
    "contrastive_head": CrossContrastiveHead,
}


class AQCObjective(AQCTerms, Data2Vec1Engine):
    """data2vec-aqc pretraining loss around a :class:`Data2VecAudioModel` (the student).

    Arguments
    ---------
    model : Data2VecAudioModel
        The network; its encoder seeds the EMA teacher.
    masker, teacher, target_builder, predictor : parts, optional
        As :class:`~d2v_speech.ssl.data2vec1_engine.Data2Vec1Engine`.
    quantizer : QuantizerSettings, optional
        Builds ``quantizer`` (on the CNN features) and ``project_q``.
    negative_sampler : NegativeSampler, optional
        Negatives of each masked frame, within its utterance.
    cluster_scaler : ClusterScaler, optional
        k-means clusters of the codes and the down-weighting of same-cluster negatives.
    contrastive_head : CrossContrastiveHead, optional
        Builds ``contr_proj`` (encoder width -> the quantizer's ``vq_dim``); the two terms'
        weights and logit temperature.
    diversity_weight : float
        Weight of the quantizer's diversity loss (fork: 0.1, clean view only).
    feature_penalty_weight : float
        Weight of the mean squared CNN feature (fork: 10).
    loss_beta, loss_scale, feature_grad_mult : float
        As :class:`~d2v_speech.ssl.data2vec1_engine.Data2Vec1Engine`.
    **shorthands
        Flat fields of default parts (:data:`AQC_SHORTHANDS`); a part left None is built from
        them with the fork's values elsewhere.
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        masker: SpanMasker | None = None,
        teacher: EMATeacherSettings | None = None,
        target_builder: TopKTargetBuilder | None = None,
        predictor: FinalProjPredictor | None = None,
        quantizer: QuantizerSettings | None = None,
        negative_sampler: NegativeSampler | None = None,
        cluster_scaler: ClusterScaler | None = None,
        contrastive_head: CrossContrastiveHead | None = None,
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        loss_beta: float = 0.0,
        loss_scale: float | None = None,
        feature_grad_mult: float = 1.0,
        **shorthands,
    ) -> None:
        given = {
            "masker": masker,
            "teacher": teacher,
            "target_builder": target_builder,
            "predictor": predictor,
            "quantizer": quantizer,
            "negative_sampler": negative_sampler,
            "cluster_scaler": cluster_scaler,
            "contrastive_head": contrastive_head,
        }
        parts = compose_parts(given, shorthands, AQC_SHORTHANDS, AQC_PART_DEFAULTS)
        super().__init__(
            model,
            **{name: parts[name] for name in V1_PART_DEFAULTS},
            loss_beta=loss_beta,
            loss_scale=loss_scale,
            feature_penalty_weight=feature_penalty_weight,
            feature_grad_mult=feature_grad_mult,
        )
        self.quantizer_settings = parts["quantizer"]
        self.quantizer, self.project_q = self.quantizer_settings.build(model.config.cnn_dim)
        self.contrastive_head = parts["contrastive_head"]
        self.contr_proj = self.contrastive_head.build(
            model.config.embed_dim, self.quantizer_settings.vq_dim
        )
        self.negative_sampler = parts["negative_sampler"]
        self.cluster_scaler = parts["cluster_scaler"]
        self.diversity_weight = diversity_weight

    # ------------------------------------------------------------------ steps
    def views(
        self, wav: torch.Tensor, wav_aug: torch.Tensor | None, sample_lengths: torch.Tensor | None
    ) -> tuple[FrontendOutput, FrontendOutput]:
        """Front-ends of the clean and augmented views (B, S); no ``wav_aug``: clean for both."""
        if wav_aug is None:
            wav_aug = wav
        if wav_aug.shape != wav.shape:
            raise ValueError(
                f"wav_aug {tuple(wav_aug.shape)} must have the clean batch's shape "
                f"{tuple(wav.shape)}"
            )
        return self.frontend(wav, sample_lengths), self.frontend(wav_aug, sample_lengths)

    def quantize_masked(
        self, normed: torch.Tensor, mask: torch.Tensor, frames_per_row: int
    ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Quantize the masked frames of one view: normed (B, T, C) -> q (B, M, vq_dim)."""
        return self.quantizer_settings.quantize_masked(
            self.quantizer, self.project_q, normed, mask, frames_per_row
        )

    def negative_indices(self, q: torch.Tensor) -> torch.Tensor:
        """(N, B, M) frame indices of each masked frame's negatives within its utterance."""
        return self.negative_sampler(q)

    def same_cluster_negatives(
        self,
        q_clean: torch.Tensor,
        q_aug: torch.Tensor,
        neg_index_clean: torch.Tensor,
        neg_index_aug: torch.Tensor,
        padded_frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, B, M) bool per view: True where a negative shares its positive's cluster."""
        return self.cluster_scaler(q_clean, q_aug, neg_index_clean, neg_index_aug, padded_frames)

    def contrastive(self, anchor, candidates, neg_index, same_cluster):
        """Cluster-scaled InfoNCE of anchors (B, M, C) against candidates (B, M, C) with negatives
        ``candidates[b, neg_index[n, b, m]]``; returns (sum over frames, stats)."""
        return self.contrastive_head.info_nce(
            anchor, candidates, neg_index, same_cluster, self.cluster_scaler
        )

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        wav: torch.Tensor,
        sample_lengths: torch.Tensor | None = None,
        wav_aug: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One data2vec-aqc step on clean waveforms ``wav`` (B, S), zero padded on the right.

        ``sample_lengths`` (B,) valid samples; ``wav_aug`` (B, S) the sample-aligned augmented
        copy (None: the clean view for the student too, an ablation); ``mask`` (B, T) frames to
        mask, the same count in every row (drawn when None); ``layer_keep`` (L,) LayerDrop
        decisions for the student. Returns ``loss`` plus every term and statistic (scalars)
        and ``per_utterance_loss`` (B,) of the regression term.
        """
        clean, aug = self.views(wav, wav_aug, sample_lengths)
        mask = self.mask_for(clean, sample_lengths, mask)
        per_row = masked_frames_per_row(mask)
        student_out = self.student_encode(aug.projected, aug.padding_mask, mask, layer_keep)
        targets = self.teacher_targets(clean.projected, clean.padding_mask)
        terms = self.regression_terms(student_out, targets, mask)

        q_clean, quant_clean = self.quantize_masked(clean.normed, mask, per_row)
        q_aug, quant_aug = self.quantize_masked(aug.normed, mask, per_row)
        index_clean = self.negative_indices(q_clean)
        index_aug = self.negative_indices(q_aug)
        same_clean, same_aug = self.same_cluster_negatives(
            q_clean, q_aug, index_clean, index_aug, mask.shape[1]
        )
        student_anchor = self.contr_proj(student_out.last_hidden_state[mask])
        # the teacher target is fixed; the gradient reaches contr_proj, the quantizer and the CNN
        teacher_anchor = self.contr_proj(terms["target"].to(student_anchor.dtype))
        anchor_shape = (q_clean.shape[0], per_row, -1)
        loss_s, stats_s = self.contrastive(
            student_anchor.view(anchor_shape), q_clean, index_clean, same_clean
        )
        loss_t, stats_t = self.contrastive(
            teacher_anchor.view(anchor_shape), q_aug, index_aug, same_aug
        )
        num_masked = terms["num_masked"].float()
        loss_s, loss_t = loss_s / num_masked, loss_t / num_masked

        penalty = self.feature_penalty(clean.cnn_features, clean.padding_mask)
        loss, aqc_stats = self.aqc_loss(
            terms["loss_regression"], (loss_s, loss_t), (stats_s, stats_t), quant_clean, penalty
        )
        return {
            "loss": loss,
            "loss_regression": terms["loss_regression"],
            **aqc_stats,
            **self.code_statistics(quant_clean, quant_aug),
            **self.regression_statistics(terms, clean),
        }


def masked_frames_per_row(mask: torch.Tensor) -> int:
    """M, the masked count of every row of ``mask`` (B, T); raises unless equal and >= 2."""
    per_row = mask.sum(dim=1)
    if int(per_row.min()) != int(per_row.max()) or int(per_row.min()) < 2:
        raise ValueError(
            "data2vec-aqc needs the same number (>= 2) of masked frames in every utterance "
            f"(negatives are drawn within an utterance); got per-row counts {per_row.tolist()}"
        )
    return int(per_row[0])
