"""The data2vec-aqc objective: data2vec + augmentation, a Gumbel quantizer, k-means and a
cluster-aware cross-contrastive loss (Lodagala et al., ICASSP 2023).

One training step on a clean batch and its augmented copy (same length, same crop)::

    clean, aug = frontend(wav), frontend(wav_aug)        # shared CNN + projection, both views
    mask = span mask (same count per row)                # one mask for both views
    student = encoder(mask(aug.projected))               # the student sees the augmented view
    targets = teacher(clean.projected)                   # the EMA teacher sees the clean one
    regression: final_proj(student[mask]) vs targets[mask]           (data2vec)
    q_clean, q_aug = project_q(quantizer(normed[mask])) per view     (B, M, 256)
    negatives: 100 other masked frames of the same utterance, per view
    k-means over both views' normalised q -> same-cluster negatives are down-weighted
    loss_s = CE(contr_proj(student[mask]); q_clean, clean negatives)
    loss_t = CE(contr_proj(targets[mask]); q_aug, aug negatives)
    loss = regression + 0.5 loss_s + 0.5 loss_t + 0.1 diversity + 10 feature penalty

Every loss term is a mean over masked frames (the fork sums and divides the gradient by the
masked-frame count, which is the same thing). Differences from the fork and their switches are
listed in the class docstring.
"""

from __future__ import annotations

import torch
from torch import nn

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.quantizer import GumbelVectorQuantizer
from d2v_speech.ssl.contrastive import within_utterance_contrastive_loss
from d2v_speech.ssl.data2vec import Data2VecObjective, valid_frames
from d2v_speech.ssl.kmeans import cosine_kmeans, num_clusters_for
from d2v_speech.ssl.monitors import frame_std
from d2v_speech.ssl.negatives import sample_negatives

CLUSTER_SIZE_SOURCES = ("padded_frames", "masked_frames")


class AQCObjective(Data2VecObjective):
    """data2vec-aqc pretraining loss around a :class:`Data2VecAudioModel` (the student).

    Arguments (beyond :class:`~d2v_speech.ssl.data2vec.Data2VecObjective`'s)
    ---------
    latent_vars, latent_groups : int
        Quantizer codebook: groups x vars entries (fork: 2 x 320).
    latent_temperature : tuple(float, float, float)
        Gumbel temperature start, end, decay per update (fork: 2, 0.5, 0.999995).
    final_dim : int
        Size of the quantized vectors and of the contrastive space (fork: 256).
    num_negatives : int
        Negatives per masked frame, from the same utterance's masked frames (fork: 100).
    cluster_factor : int
        K = max(2, T // cluster_factor) cosine k-means clusters per step (fork: 16).
    cluster_size_from : str
        "padded_frames" (the fork: T is the batch's padded frame count) or "masked_frames"
        (T is the masked count per utterance, as in ccc-wav2vec 2.0).
    scale_factor : float
        Down-weighting of same-cluster negatives (fork: 0.3).
    official_cluster_scaling : bool
        False (default): the down-weighting is always applied and always lowers a negative's
        softmax weight (its exp is multiplied by scale_factor). True: reproduce the fork, which
        multiplies the logits (raising the weight of negatives with negative similarity) and only
        in steps where some negative equals its positive.
    logit_temperature : float
        Cosine-similarity temperature (fork: 0.1).
    contrastive_weights : tuple(float, float)
        Weights of the student->clean and teacher->augmented terms (fork: 0.5, 0.5).
    diversity_weight : float
        Weight of the quantizer's diversity loss (fork: 0.1, clean view only).
    kmeans_backend, kmeans_iters : str, int
        k-means implementation ("auto", "torch", "faiss") and iterations.
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        latent_vars: int = 320,
        latent_groups: int = 2,
        latent_temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995),
        final_dim: int = 256,
        num_negatives: int = 100,
        cluster_factor: int = 16,
        cluster_size_from: str = "padded_frames",
        scale_factor: float = 0.3,
        official_cluster_scaling: bool = False,
        logit_temperature: float = 0.1,
        contrastive_weights: tuple[float, float] = (0.5, 0.5),
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        kmeans_backend: str = "auto",
        kmeans_iters: int = 20,
        **data2vec_kwargs,
    ) -> None:
        super().__init__(model, feature_penalty_weight=feature_penalty_weight, **data2vec_kwargs)
        if cluster_size_from not in CLUSTER_SIZE_SOURCES:
            raise ValueError(
                f"cluster_size_from must be one of {CLUSTER_SIZE_SOURCES}, "
                f"got {cluster_size_from!r}"
            )
        if len(contrastive_weights) != 2:
            raise ValueError(f"contrastive_weights needs 2 values, got {contrastive_weights}")
        cnn_dim = model.config.cnn_dim
        self.quantizer = GumbelVectorQuantizer(
            input_dim=cnn_dim,
            num_vars=latent_vars,
            groups=latent_groups,
            vq_dim=final_dim,
            temperature=tuple(latent_temperature),
        )
        self.project_q = nn.Linear(final_dim, final_dim)
        self.contr_proj = nn.Linear(model.config.embed_dim, final_dim)
        self.num_negatives = num_negatives
        self.cluster_factor = cluster_factor
        self.cluster_size_from = cluster_size_from
        self.scale_factor = scale_factor
        self.official_cluster_scaling = official_cluster_scaling
        self.logit_temperature = logit_temperature
        self.contrastive_weights = tuple(float(w) for w in contrastive_weights)
        self.diversity_weight = diversity_weight
        self.kmeans_backend = kmeans_backend
        self.kmeans_iters = kmeans_iters

    # ------------------------------------------------------------------ steps
    def quantize_masked(
        self, normed: torch.Tensor, mask: torch.Tensor, frames_per_row: int
    ) -> tuple[torch.Tensor, object]:
        """Quantize the masked frames of one view: normed (B, T, C) -> q (B, M, final_dim)."""
        batch_size = normed.shape[0]
        masked = normed[mask].view(batch_size, frames_per_row, normed.shape[-1])
        quantizer_out = self.quantizer(masked)
        return self.project_q(quantizer_out.quantized), quantizer_out

    def same_cluster_negatives(
        self,
        q_clean: torch.Tensor,
        q_aug: torch.Tensor,
        neg_index_clean,
        neg_index_aug,
        frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k-means over both views -> (N, B, M) bool per view: True where a negative shares its
        positive's cluster."""
        batch_size, per_row, dim = q_clean.shape
        points = torch.cat([q_clean.reshape(-1, dim), q_aug.reshape(-1, dim)]).detach()
        num_clusters = num_clusters_for(frames, self.cluster_factor, num_points=points.shape[0])
        # drawn from the global generator, whose state the checkpoints save (exact resume)
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        labels = cosine_kmeans(
            points,
            num_clusters,
            num_iters=self.kmeans_iters,
            seed=seed,
            backend=self.kmeans_backend,
        )
        labels_clean, labels_aug = labels.view(2, batch_size, per_row).unbind(0)
        return (
            _same_cluster(labels_clean, neg_index_clean),
            _same_cluster(labels_aug, neg_index_aug),
        )

    def negative_indices(self, q: torch.Tensor) -> torch.Tensor:
        """(N, B, M) frame indices of each masked frame's negatives within its utterance.

        q (B, M, C). Only the indices are used: a zero-width view of q spares gathering the
        (N, B, M, C) negative vectors (the loss gathers cosines instead).
        """
        _, neg_index = sample_negatives(q.detach()[..., :0], self.num_negatives)
        return neg_index

    def contrastive(self, anchor, candidates, neg_index, same_cluster):
        """Cluster-scaled InfoNCE of anchors (B, M, C) against candidates (B, M, C) with negatives
        ``candidates[b, neg_index[n, b, m]]``; returns (sum over frames, stats)."""
        return within_utterance_contrastive_loss(
            anchor,
            candidates,
            neg_index,
            same_cluster,
            scale_factor=self.scale_factor,
            logit_temperature=self.logit_temperature,
            official_cluster_scaling=self.official_cluster_scaling,
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
        """One data2vec-aqc step.

        Arguments
        ---------
        wav : torch.Tensor
            (B, S) clean waveforms, zero padded on the right.
        sample_lengths : torch.LongTensor | None
            (B,) valid samples per utterance.
        wav_aug : torch.Tensor | None
            (B, S) the augmented copy, sample-aligned with ``wav``. None uses the clean view for
            the student too (an ablation without augmentation).
        mask : torch.BoolTensor | None
            (B, T) frames to mask, the same count in every row; drawn when None.
        layer_keep : torch.BoolTensor | None
            (L,) LayerDrop decisions for the student.

        Returns
        -------
        dict of tensors: ``loss`` plus every term and statistic (scalars) and
        ``per_utterance_loss`` (B,) of the regression term.
        """
        if wav_aug is None:
            wav_aug = wav
        if wav_aug.shape != wav.shape:
            raise ValueError(
                f"wav_aug {tuple(wav_aug.shape)} must have the clean batch's shape "
                f"{tuple(wav.shape)}"
            )
        clean = self.frontend(wav, sample_lengths)
        aug = self.frontend(wav_aug, sample_lengths)
        if mask is None:
            mask = self.compute_mask(clean.projected, sample_lengths)
        per_row = mask.sum(dim=1)
        if int(per_row.min()) != int(per_row.max()) or int(per_row.min()) < 2:
            raise ValueError(
                "data2vec-aqc needs the same number (>= 2) of masked frames in every utterance "
                f"(negatives are drawn within an utterance); got per-row counts {per_row.tolist()}"
            )
        if clean.padding_mask is not None and (mask & clean.padding_mask).any():
            raise ValueError("mask selects padded frames; mask only frames within each length")
        frames_per_row = int(per_row[0])

        student_out = self.student_encode(aug.projected, aug.padding_mask, mask, layer_keep)
        targets = self.teacher_targets(clean.projected, clean.padding_mask)
        terms = self.regression_terms(student_out, targets, mask)
        num_masked = terms["num_masked"].float()

        q_clean, quant_clean = self.quantize_masked(clean.normed, mask, frames_per_row)
        q_aug, quant_aug = self.quantize_masked(aug.normed, mask, frames_per_row)
        index_clean = self.negative_indices(q_clean)
        index_aug = self.negative_indices(q_aug)
        frames = mask.shape[1] if self.cluster_size_from == "padded_frames" else frames_per_row
        same_clean, same_aug = self.same_cluster_negatives(
            q_clean, q_aug, index_clean, index_aug, frames
        )

        student_anchor = self.contr_proj(student_out.last_hidden_state[mask])
        # the teacher target is fixed; the gradient reaches contr_proj, the quantizer and the CNN
        teacher_anchor = self.contr_proj(terms["target"].to(student_anchor.dtype))
        student_anchor = student_anchor.view(q_clean.shape[0], frames_per_row, -1)
        teacher_anchor = teacher_anchor.view(q_aug.shape[0], frames_per_row, -1)
        loss_s, stats_s = self.contrastive(student_anchor, q_clean, index_clean, same_clean)
        loss_t, stats_t = self.contrastive(teacher_anchor, q_aug, index_aug, same_aug)
        loss_s, loss_t = loss_s / num_masked, loss_t / num_masked

        penalty = self.feature_penalty(clean.cnn_features, clean.padding_mask)
        weight_s, weight_t = self.contrastive_weights
        loss = (
            terms["loss_regression"]
            + weight_s * loss_s
            + weight_t * loss_t
            + self.diversity_weight * quant_clean.diversity_loss
            + self.feature_penalty_weight * penalty
        )
        codes = quant_clean.codes.reshape(-1, quant_clean.codes.shape[-1])
        return {
            "loss": loss,
            "loss_regression": terms["loss_regression"],
            "loss_contrastive_student": loss_s.detach(),
            "loss_contrastive_teacher": loss_t.detach(),
            "diversity_loss": quant_clean.diversity_loss.detach(),
            "feature_penalty": penalty.detach(),
            "accuracy_student": stats_s["accuracy"],
            "accuracy_teacher": stats_t["accuracy"],
            "same_cluster_fraction": stats_s["same_cluster_fraction"],
            "code_perplexity": quant_clean.code_perplexity.detach(),
            "prob_perplexity": quant_clean.prob_perplexity.detach(),
            "codes_in_use": codes_in_use(codes, self.quantizer.num_vars),
            "aug_code_perplexity": quant_aug.code_perplexity.detach(),
            "gumbel_temperature": torch.tensor(quant_clean.temperature),
            "target_var": terms["target_var"],
            "pred_var": terms["pred_var"],
            "cnn_std": frame_std(valid_frames(clean.normed, clean.padding_mask)),
            "num_masked": terms["num_masked"],
            "ema_decay": torch.tensor(self.teacher.decay),
            "per_utterance_loss": terms["per_utterance_loss"],
        }

    def after_optimizer_step(self, num_updates: int | None = None) -> None:
        """EMA step of the teacher and the quantizer's temperature for update ``num_updates``."""
        super().after_optimizer_step(num_updates)
        if num_updates is not None:
            self.quantizer.set_num_updates(num_updates)


def _same_cluster(labels: torch.Tensor, neg_index: torch.Tensor) -> torch.Tensor:
    """labels (B, M), neg_index (N, B, M) -> (N, B, M) bool: label of the negative == own label."""
    expanded = labels.unsqueeze(0).expand_as(neg_index)
    return torch.gather(expanded, 2, neg_index) == expanded


def codes_in_use(codes: torch.Tensor, num_vars: int) -> torch.Tensor:
    """Distinct codes chosen per group, summed over groups; codes (N, G) long -> scalar long.

    One scatter instead of a ``unique`` per group (no host sync).
    """
    used = torch.zeros(codes.shape[1], num_vars, dtype=torch.bool, device=codes.device)
    used.scatter_(1, codes.T, True)
    return used.sum()
