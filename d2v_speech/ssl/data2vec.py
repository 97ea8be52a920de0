"""The data2vec 1.0 speech objective: masked student regresses an EMA teacher's averaged layers.

One training step, per batch of waveforms (B, S)::

    cnn, normed, projected, pad = frontend(wav, lengths)          # shared CNN + projection
    student = student_encode(projected, pad, mask)                 # dropout -> mask -> encoder
    targets = teacher_targets(projected, pad)                      # EMA encoder, clean, no grad
    terms = regression_terms(student, targets, mask)               # final_proj + loss + stats
    ... backward, optimiser step ..., then after_optimizer_step()  # EMA update

The steps are public so that the data2vec-aqc objective can feed an augmented view to the
student while the teacher sees the clean one.

The EMA teacher (:class:`~d2v_speech.ssl.ema.EMATeacher`) tracks ``model.encoder`` only (the
Transformer with its positional conv and LayerNorm); the CNN and projection are shared. It is
not a submodule, so ``objective.parameters()`` (optimiser, DDP) never contain it, yet its weights
and update counter travel in ``objective.state_dict()`` under the ``_extra_state`` key, so a
SpeechBrain Checkpointer that saves the objective resumes the teacher too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.transformer import EncoderOutput
from d2v_speech.ssl.ema import EMATeacher
from d2v_speech.ssl.masking import compute_span_mask
from d2v_speech.ssl.monitors import frame_std
from d2v_speech.ssl.regression import regression_loss
from d2v_speech.ssl.targets import build_targets

__all__ = ["Data2VecObjective", "FrontendOutput"]


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


class Data2VecObjective(nn.Module):
    """data2vec pretraining loss around a :class:`Data2VecAudioModel` (the student).

    Arguments
    ---------
    model : Data2VecAudioModel
        The network; its encoder seeds the EMA teacher.
    average_top_k_layers : int
        Teacher layers (the last K) whose FFN outputs are averaged into targets.
    instance_norm_targets : bool
        Instance-normalise each of those layers over time before averaging (fairseq
        ``instance_norm_target_layer``; True in data2vec Base).
    loss_beta : float
        0 = L2, > 0 = smooth L1 with this beta.
    loss_scale : float | None
        Per-frame loss multiplier; None = ``1 / sqrt(D)``.
    mask_prob, mask_length, min_masks : float, int, int
        Span masking (:func:`~d2v_speech.ssl.masking.compute_span_mask`) when no mask is given.
    ema_decay, ema_end_decay, ema_anneal_end_step : float, float, int
        Teacher decay, annealed linearly over that many updates.
    ema_copy_patterns : sequence of str
        Encoder parameters copied instead of averaged (``pos_conv_embed.`` in data2vec 1.0).
    ema_compute_dtype : torch.dtype | None
        Autocast dtype of the teacher's forward; its master weights stay fp32.
    feature_grad_mult : float
        Scales the gradient that reaches the CNN (fairseq ``feature_grad_mult``; 1.0 in data2vec,
        0.1 in wav2vec 2.0, 0.0 freezes the CNN). The forward value is unchanged.
    feature_penalty_weight : float
        Weight of the mean squared CNN feature (valid frames) added to the loss (aqc: 10).
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        average_top_k_layers: int = 8,
        instance_norm_targets: bool = True,
        loss_beta: float = 0.0,
        loss_scale: float | None = None,
        mask_prob: float = 0.65,
        mask_length: int = 10,
        min_masks: int = 1,
        ema_decay: float = 0.999,
        ema_end_decay: float = 0.9999,
        ema_anneal_end_step: int = 30000,
        ema_copy_patterns: tuple[str, ...] | list[str] = ("pos_conv_embed.",),
        ema_compute_dtype: torch.dtype | None = None,
        feature_penalty_weight: float = 0.0,
        feature_grad_mult: float = 1.0,
    ) -> None:
        super().__init__()
        num_layers = model.config.num_layers
        if not 1 <= average_top_k_layers <= num_layers:
            raise ValueError(
                f"average_top_k_layers must be in [1, {num_layers}] (the model's layer count), "
                f"got {average_top_k_layers}"
            )
        if feature_penalty_weight < 0:
            raise ValueError(f"feature_penalty_weight must be >= 0, got {feature_penalty_weight}")
        self.model = model
        embed_dim = model.config.embed_dim
        self.final_proj = nn.Linear(embed_dim, embed_dim)
        self.average_top_k_layers = average_top_k_layers
        self.instance_norm_targets = instance_norm_targets
        self.loss_beta = loss_beta
        self.loss_scale = loss_scale
        self.mask_prob = mask_prob
        self.mask_length = mask_length
        self.min_masks = min_masks
        self.feature_penalty_weight = feature_penalty_weight
        if feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0, got {feature_grad_mult}")
        self.feature_grad_mult = feature_grad_mult
        # Plain attribute (EMATeacher is no nn.Module): invisible to parameters() and DDP.
        self.teacher = EMATeacher(
            model.encoder,
            decay_start=ema_decay,
            decay_end=ema_end_decay,
            anneal_steps=ema_anneal_end_step,
            copy_patterns=tuple(ema_copy_patterns),
            compute_dtype=ema_compute_dtype,
        )

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
        """Span mask (B, T) for features (B, T, D), never on padding."""
        frame_lengths = None
        if sample_lengths is not None:
            frame_lengths = self.model.frame_lengths(sample_lengths).cpu()
        mask = compute_span_mask(
            tuple(projected.shape[:2]),
            frame_lengths,
            mask_prob=self.mask_prob,
            mask_length=self.mask_length,
            min_masks=self.min_masks,
        )
        return mask.to(projected.device)

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
        return build_targets(
            teacher_out.ffn_outputs,
            self.average_top_k_layers,
            padding_mask,
            instance_norm=self.instance_norm_targets,
        )

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
        pred = self.final_proj(student_out.last_hidden_state[mask])
        target = targets[mask]
        per_frame = regression_loss(pred, target, self.loss_beta, self.loss_scale)
        rows = mask.nonzero()[:, 0]
        batch_size = mask.shape[0]
        per_row_sum = per_frame.new_zeros(batch_size).index_add(0, rows, per_frame)
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

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        wav: torch.Tensor,
        sample_lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One data2vec step on a batch of waveforms.

        Arguments
        ---------
        wav : torch.Tensor
            ``(B, S)`` waveforms, zero padded on the right.
        sample_lengths : torch.LongTensor | None
            ``(B,)`` valid samples per utterance; None means no padding.
        mask : torch.BoolTensor | None
            ``(B, T)`` frames to mask; drawn with :meth:`compute_mask` when None.
        layer_keep : torch.BoolTensor | None
            ``(L,)`` LayerDrop decisions for the student (training only).

        Returns
        -------
        dict[str, torch.Tensor]
            ``loss`` (scalar to backprop), ``loss_regression``, ``feature_penalty``,
            ``target_var``, ``pred_var``, ``cnn_std``, ``num_masked``, ``ema_decay`` (scalars)
            and ``per_utterance_loss`` (B,).
        """
        front = self.frontend(wav, sample_lengths)
        if mask is None:
            mask = self.compute_mask(front.projected, sample_lengths)
        elif mask.shape != front.projected.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(front.projected.shape[:2])} (B, T), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        elif front.padding_mask is not None and (mask & front.padding_mask).any():
            raise ValueError("mask selects padded frames; mask only frames within each length")
        student_out = self.student_encode(front.projected, front.padding_mask, mask, layer_keep)
        targets = self.teacher_targets(front.projected, front.padding_mask)
        terms = self.regression_terms(student_out, targets, mask)
        penalty = self.feature_penalty(front.cnn_features, front.padding_mask)
        loss = terms["loss_regression"]
        if self.feature_penalty_weight > 0:
            loss = loss + self.feature_penalty_weight * penalty
        return {
            "loss": loss,
            "loss_regression": terms["loss_regression"],
            "feature_penalty": penalty.detach(),
            "target_var": terms["target_var"],
            "pred_var": terms["pred_var"],
            "cnn_std": frame_std(valid_frames(front.normed, front.padding_mask)),
            "num_masked": terms["num_masked"],
            "ema_decay": torch.tensor(self.teacher.decay, device=wav.device),
            "per_utterance_loss": terms["per_utterance_loss"],
        }

    # ------------------------------------------------------------ teacher
    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher towards ``model.encoder``."""
        self.teacher.to(next(self.model.encoder.parameters()).device)
        self.teacher.step(self.model.encoder)

    def after_optimizer_step(self, num_updates: int | None = None) -> None:
        """Hook for the Brain after every real optimiser step (call on the unwrapped module).

        ``num_updates`` (the Brain's update count) is unused here; subclasses schedule on it.
        """
        self.update_teacher()

    def reset_teacher(self) -> None:
        """Copy the student's encoder into the teacher (e.g. after loading pretrained weights)."""
        self.teacher.model.load_state_dict(self.model.encoder.state_dict())

    def get_extra_state(self) -> dict[str, Any]:
        """Teacher weights and update counter, saved with ``state_dict()``."""
        return {"teacher": self.teacher.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        if not isinstance(state, dict) or "teacher" not in state:
            raise ValueError("objective extra state must be a dict with a 'teacher' entry")
        self.teacher.load_state_dict(state["teacher"])
