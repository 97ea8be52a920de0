"""The data2vec 1.0 engine under both v1 objectives (data2vec and data2vec-aqc).

One training step, per batch of waveforms (B, S)::

    front = frontend(wav, lengths)                        # shared CNN + projection
    mask = mask_for(front, lengths, mask)                 # the masker part, or a given mask
    student = student_encode(front.projected, pad, mask)  # dropout -> mask embedding -> encoder
    targets = teacher_targets(front.projected, pad)       # teacher + target builder parts, no grad
    terms = regression_terms(student, targets, mask)      # predictor part (final_proj) + loss
    ... backward, optimiser step ..., then after_optimizer_step()  # EMA update

The parts a YAML passes in (each may be swapped without code):

* ``masker``: :class:`~d2v_speech.ssl.span_masker.SpanMasker`;
* ``teacher``: :class:`~d2v_speech.ssl.ema.EMATeacherSettings`, built on ``model.encoder`` (the
  Transformer with its positional conv and LayerNorm; the CNN and projection are shared);
* ``target_builder``: :class:`~d2v_speech.ssl.target_builder.TopKTargetBuilder`;
* ``predictor``: :class:`~d2v_speech.ssl.final_proj_predictor.FinalProjPredictor`, whose Linear
  the engine registers as ``final_proj`` (the checkpoints' key).

The EMA teacher is no submodule, so ``objective.parameters()`` (optimiser, DDP) never contain it,
yet its weights and update counter travel in ``objective.state_dict()`` under ``_extra_state``,
so a SpeechBrain Checkpointer that saves the objective resumes the teacher too.

Python callers may also give the parts' fields as the flat keywords of the objectives' first
API (``mask_prob``, ``ema_decay``, ``average_top_k_layers``, ...): :func:`compose_parts` builds
the default part from them. A part and its flat fields together are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.transformer import EncoderOutput
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.final_proj_predictor import FinalProjPredictor
from d2v_speech.ssl.monitors import frame_std
from d2v_speech.ssl.regression import regression_loss
from d2v_speech.ssl.span_masker import SpanMasker
from d2v_speech.ssl.target_builder import TopKTargetBuilder
from d2v_speech.ssl.teacher_hooks import EncoderTeacherHooks
from d2v_speech.ssl.variance_floor import check_variance_floor, variance_floor_terms

__all__ = [
    "Data2Vec1Engine",
    "FrontendOutput",
    "V1_PART_DEFAULTS",
    "V1_SHORTHANDS",
    "compose_parts",
    "scale_gradient",
    "valid_frames",
]

# flat keyword of the first API -> (part, field of that part's class)
V1_SHORTHANDS: dict[str, tuple[str, str]] = {
    "mask_prob": ("masker", "mask_prob"),
    "mask_length": ("masker", "mask_length"),
    "min_masks": ("masker", "min_masks"),
    "ema_decay": ("teacher", "decay_start"),
    "ema_end_decay": ("teacher", "decay_end"),
    "ema_anneal_end_step": ("teacher", "anneal_steps"),
    "ema_copy_patterns": ("teacher", "copy_patterns"),
    "ema_compute_dtype": ("teacher", "compute_dtype"),
    "average_top_k_layers": ("target_builder", "top_k"),
    "instance_norm_targets": ("target_builder", "instance_norm"),
}
V1_PART_DEFAULTS: dict[str, Callable[..., Any]] = {
    "masker": SpanMasker,
    "teacher": EMATeacherSettings,
    "target_builder": TopKTargetBuilder,
    "predictor": FinalProjPredictor,
}


class FrontendOutput(NamedTuple):
    """Shared front-end tensors of one batch."""

    cnn_features: torch.Tensor  # (B, T, C) raw CNN output
    normed: torch.Tensor  # (B, T, C) after LayerNorm (the aqc quantizer input)
    projected: torch.Tensor  # (B, T, D) before dropout and masking (the teacher input)
    padding_mask: torch.Tensor | None  # (B, T) True = padded frame


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``factor`` in the backward pass."""
    if factor == 0.0:
        return x.detach()
    return x * factor + x.detach() * (1.0 - factor)


def valid_frames(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, C) -> (N_valid, C)."""
    return x.reshape(-1, x.shape[-1]) if padding_mask is None else x[~padding_mask]


def compose_parts(
    parts: Mapping[str, Any],
    shorthands: Mapping[str, Any],
    table: Mapping[str, tuple[str, str]],
    defaults: Mapping[str, Callable[..., Any]],
) -> dict[str, Any]:
    """Every part of ``defaults``: the one given in ``parts``, else built from its flat fields.

    ``table`` maps a flat keyword to (part, field); ``defaults`` maps a part to its factory.
    """
    unknown = sorted(set(shorthands) - set(table))
    if unknown:
        raise TypeError(f"unexpected keyword arguments {unknown}")
    fields: dict[str, dict[str, Any]] = {part: {} for part in defaults}
    for name, value in shorthands.items():
        part, field = table[name]
        fields[part][field] = value
    composed = {}
    for part, factory in defaults.items():
        if parts.get(part) is None:
            composed[part] = factory(**fields[part])
            continue
        if fields[part]:
            flat = sorted(name for name, (owner, _) in table.items() if owner == part)
            given = [name for name in flat if name in shorthands]
            raise ValueError(f"{given} set fields of the {part} part given too; set them there")
        composed[part] = parts[part]
    return composed


class Data2Vec1Engine(EncoderTeacherHooks, nn.Module):
    """Shared steps of the v1 objectives around a :class:`Data2VecAudioModel` (the student).

    Arguments
    ---------
    model : Data2VecAudioModel
        The network; its encoder seeds the EMA teacher.
    masker : SpanMasker
        Draws the (B, T) mask when the batch brings none.
    teacher : EMATeacherSettings
        Schedule of the EMA of ``model.encoder`` (data2vec 1.0 copies ``pos_conv_embed.``).
    target_builder : TopKTargetBuilder
        Targets from the teacher's FFN outputs.
    predictor : FinalProjPredictor
        Builds ``final_proj``.
    loss_beta : float
        0 = L2, > 0 = smooth L1 with this beta.
    loss_scale : float | None
        Per-frame loss multiplier; None = ``1 / sqrt(D)``.
    feature_penalty_weight : float
        Weight of the mean squared CNN feature (valid frames) in the loss.
    feature_grad_mult : float
        Scales the gradient that reaches the CNN (fairseq ``feature_grad_mult``; 1.0 in data2vec,
        0.0 freezes the CNN). The forward value is unchanged.
    variance_floor, variance_weight : float
        Minimum std over time of each channel of the frame-normalised encoder input and the
        weight of its hinge in the loss (:mod:`~d2v_speech.ssl.variance_floor`); floor 0 (the
        papers) switches it off.
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        masker: SpanMasker,
        teacher: EMATeacherSettings,
        target_builder: TopKTargetBuilder,
        predictor: FinalProjPredictor,
        loss_beta: float = 0.0,
        loss_scale: float | None = None,
        feature_penalty_weight: float = 0.0,
        feature_grad_mult: float = 1.0,
        variance_floor: float = 0.0,
        variance_weight: float = 1.0,
    ) -> None:
        super().__init__()
        target_builder.check_layers(model.config.num_layers)
        self.variance_floor, self.variance_weight = check_variance_floor(
            variance_floor, variance_weight
        )
        if feature_penalty_weight < 0:
            raise ValueError(f"feature_penalty_weight must be >= 0, got {feature_penalty_weight}")
        if feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0, got {feature_grad_mult}")
        self.model = model
        self.final_proj = predictor.build(model.config.embed_dim)
        self.masker = masker
        self.target_builder = target_builder
        self.predictor = predictor
        self.loss_beta = loss_beta
        self.loss_scale = loss_scale
        self.feature_penalty_weight = feature_penalty_weight
        self.feature_grad_mult = feature_grad_mult
        # plain attribute (EMATeacher is no nn.Module): invisible to parameters() and DDP
        self.teacher = teacher.build(model.encoder)

    # ------------------------------------------------------------------ steps
    def frontend(
        self, wav: torch.Tensor, sample_lengths: torch.Tensor | None = None
    ) -> FrontendOutput:
        """Shared CNN + projection: wav (B, S), sample_lengths (B,) -> :class:`FrontendOutput`."""
        cnn_features, padding_mask = self.model.extract_cnn_features(wav, sample_lengths)
        if self.feature_grad_mult != 1.0:
            cnn_features = scale_gradient(cnn_features, self.feature_grad_mult)
        normed, projected = self.model.project_features(cnn_features)
        return FrontendOutput(cnn_features, normed, projected, padding_mask)

    def compute_mask(
        self, projected: torch.Tensor, sample_lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The masker's mask (B, T) for features (B, T, D), never on padding."""
        frame_lengths = None
        if sample_lengths is not None:
            frame_lengths = self.model.frame_lengths(sample_lengths).cpu()
        return self.masker(tuple(projected.shape[:2]), frame_lengths).to(projected.device)

    def mask_for(
        self,
        front: FrontendOutput,
        sample_lengths: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """``mask`` (B, T) bool after checking it, or a drawn one when None."""
        if mask is None:
            return self.compute_mask(front.projected, sample_lengths)
        if mask.shape != front.projected.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(front.projected.shape[:2])} (B, T), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if front.padding_mask is not None and (mask & front.padding_mask).any():
            raise ValueError("mask selects padded frames; mask only frames within each length")
        return mask

    def student_encode(
        self,
        projected: torch.Tensor,
        padding_mask: torch.Tensor | None,
        mask: torch.Tensor,
        layer_keep: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Feature dropout -> mask embedding at ``mask`` (B, T) -> encoder (LayerDrop in training).

        Dropout comes before masking, as fairseq ``dropout_input`` and the model's own forward.
        """
        x = self.model.feature_projection.dropout(projected)
        x = self.model.apply_mask(x, mask)
        return self.model.encoder(x, padding_mask, layer_keep)

    def teacher_targets(
        self, projected: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Teacher on clean, unmasked features (B, T, D) -> fp32 targets (B, T, D), no grad."""
        teacher_out = self.teacher(projected.detach().float(), padding_mask)
        return self.target_builder(teacher_out.ffn_outputs, padding_mask)

    def regression_terms(
        self, student_out: EncoderOutput, targets: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``final_proj`` on the student's masked frames vs ``targets`` there.

        Returns ``loss_regression`` (mean over masked frames), ``per_utterance_loss`` (B,)
        (mean over each row's masked frames, 0 for a row without any), ``target_var``,
        ``pred_var``, ``num_masked``, and the ``pred`` / ``target`` (N, D) themselves.
        """
        num_masked = int(mask.sum())
        if num_masked == 0:
            raise ValueError("the mask selects no frame, so there is nothing to predict")
        pred = self.predictor.predict(self.final_proj, student_out.last_hidden_state, mask)
        target = targets[mask]
        per_frame = regression_loss(pred, target, self.loss_beta, self.loss_scale)
        rows = mask.nonzero()[:, 0]
        per_row_sum = per_frame.new_zeros(mask.shape[0]).index_add(0, rows, per_frame)
        per_row_count = mask.sum(dim=1).clamp_min(1).to(per_frame.dtype)
        return {
            "loss_regression": per_frame.mean(),
            "per_utterance_loss": per_row_sum / per_row_count,
            "target_var": frame_std(target),
            "pred_var": frame_std(pred.float()),
            "num_masked": torch.tensor(num_masked, device=pred.device),
            "pred": pred,
            "target": target,
        }

    def feature_penalty(
        self, cnn_features: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean squared CNN feature over valid frames (wav2vec 2.0 ``features_pen``), fp32."""
        return valid_frames(cnn_features, padding_mask).float().square().mean()

    def variance_terms(self, front: FrontendOutput) -> dict[str, torch.Tensor]:
        """``input_std`` and ``variance_hinge`` of the encoder input; {} when the floor is off."""
        if self.variance_floor == 0:
            return {}
        return variance_floor_terms(front.projected, front.padding_mask, self.variance_floor)

    def regression_statistics(
        self, terms: dict[str, torch.Tensor], front: FrontendOutput
    ) -> dict[str, torch.Tensor]:
        """The logged statistics both objectives share (scalars, and ``per_utterance_loss``)."""
        device = terms["loss_regression"].device
        return {
            "target_var": terms["target_var"],
            "pred_var": terms["pred_var"],
            "cnn_std": frame_std(valid_frames(front.normed, front.padding_mask)),
            "num_masked": terms["num_masked"],
            "ema_decay": torch.tensor(self.teacher.decay, device=device),
            "per_utterance_loss": terms["per_utterance_loss"],
        }
