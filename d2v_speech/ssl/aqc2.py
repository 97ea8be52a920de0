"""data2vec-aqc on the data2vec 2.0 engine: augmented clones, a clean teacher, and the fork's
cluster-aware cross-contrastive terms on the decoder's predictions.

How the aqc parts attach to the 2.0 engine, and why:

* **All M clones come from the augmented view**, the teacher encodes the clean view once. This
  is the fork's semantics (the student sees the augmented view, the teacher the clean one); the
  clones only multiply the masks, as in data2vec 2.0. The CNN runs twice per utterance (clean,
  augmented), as in the v1 aqc objective.
* **The contrastive anchors are the decoder's outputs** at masked frames: in 2.0 the student has
  no output at a masked frame, the decoder's prediction is what stands for it (v1 used the
  Transformer's output there). The teacher's anchors are its targets at the same frames.
* **Only some clones and frames carry the contrastive terms** (``contrastive_clones`` clones per
  utterance, at most ``contrastive_frames`` masked frames each, drawn uniformly): every extra
  clone costs a quantizer pass over two views plus ``num_negatives`` cosines per frame while
  adding little new information, since all clones share one waveform. The default, one clone,
  gives each utterance the fork's number of contrastive frames and keeps the aqc parts small
  beside the engine (``benchmarks/pretrain_step.py``). Equal counts per row (which
  within-utterance negatives need) also make padded batches work.

One step::

    clean, aug = frontend(wav), frontend(wav_aug)
    pred = decoder(student(clones(aug.local), mask))              # (B*M, T, D), engine
    y = targets(teacher(clean.local))                             # (B, T, D), engine
    regression: pred[mask] vs y[mask]
    rows, frames = first C clones, F masked frames each           # (B*C, F)
    q_clean, q_aug = project_q(quantizer(normed[frames])) per view
    loss_s = InfoNCE(contr_proj(pred[frames]); q_clean, clean negatives, cluster scaling)
    loss_t = InfoNCE(contr_proj(y[frames]); q_aug, aug negatives, cluster scaling)
    loss = regression + w_s loss_s + w_t loss_t + diversity + feature penalty
"""

from __future__ import annotations

import torch

from d2v_speech.nn.conv_decoder import ConvDecoder1d
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.aqc_terms import AQCTerms
from d2v_speech.ssl.block_masker import BlockMasker
from d2v_speech.ssl.cluster_scaler import ClusterScaler
from d2v_speech.ssl.cross_contrastive import CrossContrastiveHead
from d2v_speech.ssl.data2vec2 import Data2Vec2Objective
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.negative_sampler import NegativeSampler
from d2v_speech.ssl.quantizer_settings import QuantizerSettings
from d2v_speech.ssl.target_builder import TopKTargetBuilder

__all__ = ["AQC2Objective", "contrastive_frames"]


def contrastive_frames(
    mask: torch.Tensor, num_clones: int, clones: int, max_frames: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clone rows and masked frames that carry the contrastive terms.

    mask (B * M, T) -> (rows (B * C,) long: clones 0..C-1 of each utterance, frames (B * C, F)
    long: F masked frames of each such row, drawn uniformly, in time order). F is the smallest
    masked count of those rows, capped at ``max_frames``.
    """
    batch = mask.shape[0] // num_clones
    rows = (
        torch.arange(batch, device=mask.device).unsqueeze(1) * num_clones
        + torch.arange(clones, device=mask.device)
    ).flatten()
    selected = mask[rows]
    count = int(selected.sum(dim=1).min())
    if max_frames is not None:
        count = min(count, max_frames)
    if count < 2:
        raise ValueError(
            f"the contrastive terms need >= 2 masked frames in every row (negatives come from "
            f"the same row), got {count}; use longer clips or a larger mask_prob"
        )
    # every masked frame outranks every visible one; ties break uniformly
    rank = selected.float() + torch.rand(selected.shape, device=mask.device)
    frames = rank.topk(count, dim=1).indices.sort(dim=1).values
    return rows, frames


def _gather_frames(x: torch.Tensor, rows: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """x (R, T, C) at rows (B', ) and frames (B', F) -> (B', F, C)."""
    picked = x[rows]
    return torch.gather(picked, 1, frames.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class AQC2Objective(AQCTerms, Data2Vec2Objective):
    """data2vec-aqc pretraining loss on the data2vec 2.0 engine (see the module docstring).

    Arguments
    ---------
    model, masker, teacher, target_builder, decoder
        The engine's parts, as :class:`~d2v_speech.ssl.data2vec2.Data2Vec2Objective`.
    quantizer : QuantizerSettings
        Builds ``quantizer`` (on the LayerNorm-ed CNN features) and ``project_q``.
    negative_sampler : NegativeSampler
        Negatives of each frame among its row's contrastive frames.
    cluster_scaler : ClusterScaler
        k-means over both views' codes; same-cluster negatives are down-weighted.
    contrastive_head : CrossContrastiveHead
        Builds ``contr_proj``; the two terms' weights and logit temperature.
    contrastive_clones : int
        Clones per utterance that carry the contrastive terms (1..M).
    contrastive_frames : int | None
        At most this many masked frames per such clone (None: all, equalised across rows).
    diversity_weight, feature_penalty_weight : float
        Weights of the quantizer's diversity loss (clean view) and of the CNN feature penalty.
    **engine_options
        ``decoder_input_dropout``, ``mask_noise_std``, ``loss_beta``, ``loss_scale``,
        ``variance_floor`` and ``variance_weight`` (on the clean view's encoder input, the
        teacher's; the CNN is shared by both views).
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        masker: BlockMasker,
        teacher: EMATeacherSettings,
        target_builder: TopKTargetBuilder,
        decoder: ConvDecoder1d,
        quantizer: QuantizerSettings,
        negative_sampler: NegativeSampler,
        cluster_scaler: ClusterScaler,
        contrastive_head: CrossContrastiveHead,
        contrastive_clones: int = 1,
        contrastive_frames: int | None = None,
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        **engine_options,
    ) -> None:
        super().__init__(
            model,
            masker,
            teacher,
            target_builder,
            decoder,
            feature_penalty_weight=feature_penalty_weight,
            **engine_options,
        )
        if not 1 <= contrastive_clones <= masker.num_clones:
            raise ValueError(
                f"contrastive_clones must be in [1, {masker.num_clones}] (the masker's "
                f"num_clones), got {contrastive_clones}"
            )
        if contrastive_frames is not None and contrastive_frames < 2:
            raise ValueError(f"contrastive_frames must be >= 2 or null, got {contrastive_frames}")
        self.quantizer, self.project_q = quantizer.build(model.config.cnn_dim)
        self.contr_proj = contrastive_head.build(model.config.embed_dim, quantizer.vq_dim)
        self.negative_sampler = negative_sampler
        self.cluster_scaler = cluster_scaler
        self.contrastive_head = contrastive_head
        self.contrastive_clones = int(contrastive_clones)
        self.contrastive_frames = contrastive_frames
        self.diversity_weight = float(diversity_weight)

    def contrastive_terms(self, clean_normed, aug_normed, predictions, targets, mask):
        """Both cross-contrastive terms (means over the contrastive frames) and statistics.

        clean_normed, aug_normed (B, T, C); predictions (B * M, T, D); targets (B, T, D);
        mask (B * M, T).
        """
        rows, frames = contrastive_frames(
            mask, self.num_clones, self.contrastive_clones, self.contrastive_frames
        )
        utterances = torch.div(rows, self.num_clones, rounding_mode="floor")
        q_clean_out = self.quantizer(_gather_frames(clean_normed, utterances, frames))
        q_aug_out = self.quantizer(_gather_frames(aug_normed, utterances, frames))
        q_clean = self.project_q(q_clean_out.quantized)
        q_aug = self.project_q(q_aug_out.quantized)
        index_clean, index_aug = self.negative_sampler(q_clean), self.negative_sampler(q_aug)
        same_clean, same_aug = self.cluster_scaler(
            q_clean, q_aug, index_clean, index_aug, mask.shape[1]
        )
        student_anchor = self.contr_proj(_gather_frames(predictions, rows, frames))
        # the targets are fixed; the gradient reaches contr_proj, the quantizer and the CNN
        teacher_anchor = self.contr_proj(
            _gather_frames(targets, utterances, frames).to(student_anchor.dtype)
        )
        head, scaler = self.contrastive_head, self.cluster_scaler
        loss_s, stats_s = head.info_nce(student_anchor, q_clean, index_clean, same_clean, scaler)
        loss_t, stats_t = head.info_nce(teacher_anchor, q_aug, index_aug, same_aug, scaler)
        count = float(frames.numel())
        return q_clean_out, q_aug_out, loss_s / count, loss_t / count, stats_s, stats_t

    def forward(
        self,
        wav: torch.Tensor,
        sample_lengths: torch.Tensor | None = None,
        wav_aug: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One aqc2 step: wav / wav_aug (B, S) clean and augmented views (None: the clean one),
        sample_lengths (B,), mask (B * M, T), layer_keep (L,) -> ``loss`` and statistics."""
        if wav_aug is None:
            wav_aug = wav
        if wav_aug.shape != wav.shape:
            raise ValueError(
                f"wav_aug {tuple(wav_aug.shape)} must have the clean batch's shape "
                f"{tuple(wav.shape)}"
            )
        cnn_clean, normed_clean, local_clean, padding_mask = self.frontend(wav, sample_lengths)
        _, normed_aug, local_aug, _ = self.frontend(wav_aug, sample_lengths)
        mask = self.clone_masks(mask, local_clean, padding_mask)
        predictions = self.student_predictions(local_aug, padding_mask, mask, layer_keep)
        targets = self.teacher_targets(local_clean, padding_mask, wav, sample_lengths)
        terms = self.regression_terms(predictions, targets, mask)
        quant, quant_aug, loss_s, loss_t, stats_s, stats_t = self.contrastive_terms(
            normed_clean, normed_aug, predictions, targets, mask
        )
        floor_input = local_clean if self.variance_floor > 0 else None
        frame_stats = self.frame_statistics(
            cnn_clean, normed_clean, mask, padding_mask, floor_input
        )
        penalty = frame_stats.pop("feature_penalty")
        loss, aqc_stats = self.aqc_loss(
            terms["loss_regression"], (loss_s, loss_t), (stats_s, stats_t), quant, penalty
        )
        if floor_input is not None:
            loss = loss + self.variance_weight * frame_stats["variance_hinge"]
            frame_stats["variance_hinge"] = frame_stats["variance_hinge"].detach()
        return {
            "loss": loss,
            "loss_regression": terms["loss_regression"].detach(),
            **aqc_stats,
            **self.code_statistics(quant, quant_aug),
            "target_var": terms["target_var"],
            "pred_var": terms["pred_var"],
            **frame_stats,
            "num_masked": terms["num_masked"],
            "ema_decay": torch.tensor(self.teacher.decay),
            "per_utterance_loss": terms["per_utterance_loss"],
        }
