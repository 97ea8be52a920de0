"""The data2vec 2.0 engine: one teacher pass serves M masked clones, the student encodes only the
visible half of each clone, a light conv decoder predicts the targets (Baevski et al., 2022).

One training step on a batch of waveforms (B, S)::

    local = project(CNN(wav))                                  # (B, T, D), once per utterance
    clones = local.repeat_interleave(M)                        # (B*M, T, D), one mask each
    h, kept = encoder.encode_kept(clones, ~mask)               # (B*M, T_keep, D), ALiBi bias
    full = restore(dropout(h), kept) with N(0, 0.01^2) noise   # (B*M, T, D) at the hidden frames
    pred = decoder(full)[mask]                                 # (N, D)
    y = targets(teacher(local)).repeat_interleave(M)[mask]     # teacher: un-cloned, clean, no grad
    loss = mean over (clone, masked frame) of |pred - y|^2 / sqrt(D)

Parts (each passed in by the YAML): ``masker`` (:class:`~d2v_speech.ssl.block_masker.BlockMasker`,
whose masks the data pipeline usually precomputes), ``teacher``
(:class:`~d2v_speech.ssl.ema.EMATeacherSettings`, built on ``model.encoder``: the layers, the
positional conv, the LayerNorm and ``alibi_scale`` are averaged; the CNN and projection are
shared), ``target_builder`` (:class:`~d2v_speech.ssl.target_builder.TopKTargetBuilder`) and the
predictor ``decoder`` (:class:`~d2v_speech.nn.conv_decoder.ConvDecoder1d`).

Padded batches are supported (fairseq crops instead): masks stay inside each valid length,
kept sequences are padded per row and masked out of attention, the positional conv and the
decoder re-zero padding before every layer, and targets are normalised over valid frames, so
an utterance gets the same loss in a padded batch as alone.
"""

from __future__ import annotations

import torch
from torch import nn

from d2v_speech.nn.conv_decoder import ConvDecoder1d
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.transformer import KeptFrames
from d2v_speech.ssl.block_masker import BlockMasker
from d2v_speech.ssl.data2vec1_engine import scale_gradient
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.monitors import frame_std
from d2v_speech.ssl.regression import regression_loss
from d2v_speech.ssl.target_builder import TopKTargetBuilder
from d2v_speech.ssl.teacher_hooks import EncoderTeacherHooks
from d2v_speech.ssl.variance_floor import check_variance_floor, variance_floor_terms

__all__ = [
    "Data2Vec2Objective",
    "restore_with_noise",
    "per_utterance_mean",
]

TEACHER_INPUTS = ("student_features", "own_feature_encoder")


def restore_with_noise(
    kept_states: torch.Tensor, kept: KeptFrames, num_frames: int, noise_std: float
) -> torch.Tensor:
    """Put kept frames back in time order; every other frame gets fresh N(0, noise_std^2) noise.

    kept_states (N, T_keep, D) -> (N, num_frames, D). The fill slots of short rows are dropped.
    """
    rows, _, dim = kept_states.shape
    full = torch.randn(
        rows, num_frames, dim, device=kept_states.device, dtype=kept_states.dtype
    ).mul_(noise_std)
    index = kept.index.masked_fill(kept.padding_mask, num_frames)
    # one extra slot swallows the fill entries, then is cut off
    full = torch.cat([full, full.new_zeros(rows, 1, dim)], dim=1)
    full = full.scatter(1, index.unsqueeze(-1).expand(-1, -1, dim), kept_states)
    return full[:, :num_frames]


def per_utterance_mean(per_frame: torch.Tensor, rows: torch.Tensor, num_rows: int, clones: int):
    """Mean of per-frame values (N,) per utterance, over its clones' masked frames -> (B,)."""
    utterance = torch.div(rows, clones, rounding_mode="floor")
    total = per_frame.new_zeros(num_rows // clones).index_add(0, utterance, per_frame)
    count = per_frame.new_zeros(num_rows // clones).index_add(
        0, utterance, torch.ones_like(per_frame)
    )
    return total / count.clamp_min(1.0)


class Data2Vec2Objective(EncoderTeacherHooks, nn.Module):
    """data2vec 2.0 pretraining loss around a :class:`Data2VecAudioModel` (the student).

    Arguments
    ---------
    model : Data2VecAudioModel
        The network (``config.alibi`` True for fairseq's model); its encoder seeds the teacher.
    masker : BlockMasker
        Draws the (B * M, T) masks when the batch brings none; its ``num_clones`` is M.
    teacher : EMATeacherSettings
        Decay schedule of the EMA of ``model.encoder`` (2.0: 0.999 -> 0.99999, nothing copied).
    target_builder : TopKTargetBuilder
        Targets from the teacher's FFN outputs.
    decoder : ConvDecoder1d
        The predictor (``decoder.*`` in the state dict).
    decoder_input_dropout : float
        Dropout on the student's output before the decoder (fairseq ``input_dropout`` 0.1).
    mask_noise_std : float
        Std of the placeholders at hidden frames (fairseq ``mask_noise_std`` 0.01).
    loss_beta, loss_scale : float, float | None
        0 = L2, > 0 smooth L1; per-frame multiplier, None = 1 / sqrt(D).
    feature_penalty_weight : float
        Weight of the mean squared CNN feature (0 in data2vec 2.0).
    feature_grad_mult : float
        Scales the gradient that reaches the CNN (fairseq ``local_grad_mult``, 1.0 in data2vec
        2.0; 0.1 in wav2vec 2.0); the forward value is unchanged.
    teacher_input : str
        "student_features" (fairseq's default): the teacher encodes the student's CNN and
        projection output, so the student's CNN shapes its own targets. "own_feature_encoder"
        (fairseq ``ema_local_encoder``): the teacher is the EMA of the whole network and runs
        its own CNN on the waveform. On the tiny CPU runs the first lets the CNN output go
        constant over time (``cnn_std`` 0.6 -> 0.01 in 500 updates, whatever the EMA decay or
        the warm-up), which makes the targets predictable from position alone.
    variance_floor : float
        Each channel of the frame-normalised encoder input should vary over time within an
        utterance by at least this std (:mod:`~d2v_speech.ssl.variance_floor`); 0 (fairseq)
        switches it off.
        The hinge ``mean(relu(floor - std))`` is added with ``variance_weight``, as VICReg's
        variance term (Bardes et al., 2022): it pushes only on channels below the floor, so it
        stops the CNN from emitting the same vector for every frame.
    variance_weight : float
        Weight of that hinge.
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        masker: BlockMasker,
        teacher: EMATeacherSettings,
        target_builder: TopKTargetBuilder,
        decoder: ConvDecoder1d,
        decoder_input_dropout: float = 0.1,
        mask_noise_std: float = 0.01,
        loss_beta: float = 0.0,
        loss_scale: float | None = None,
        feature_penalty_weight: float = 0.0,
        feature_grad_mult: float = 1.0,
        teacher_input: str = "student_features",
        variance_floor: float = 0.0,
        variance_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.variance_floor, self.variance_weight = check_variance_floor(
            variance_floor, variance_weight
        )
        if teacher_input not in TEACHER_INPUTS:
            raise ValueError(
                f"teacher_input must be one of {TEACHER_INPUTS}, got {teacher_input!r}"
            )
        self.teacher_input = teacher_input
        if feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0, got {feature_grad_mult}")
        self.feature_grad_mult = float(feature_grad_mult)
        target_builder.check_layers(model.config.num_layers)
        if decoder.embed_dim != model.config.embed_dim:
            raise ValueError(
                f"decoder embed_dim {decoder.embed_dim} != model embed_dim {model.config.embed_dim}"
            )
        if feature_penalty_weight < 0:
            raise ValueError(f"feature_penalty_weight must be >= 0, got {feature_penalty_weight}")
        self.model = model
        self.decoder = decoder
        self.masker = masker
        self.target_builder = target_builder
        self.decoder_dropout = nn.Dropout(decoder_input_dropout)
        self.mask_noise_std = float(mask_noise_std)
        self.loss_beta = loss_beta
        self.loss_scale = loss_scale
        self.feature_penalty_weight = feature_penalty_weight
        # plain attribute (EMATeacher is no nn.Module): invisible to parameters() and DDP
        self.teacher = teacher.build(self.teacher_source())

    @property
    def num_clones(self) -> int:
        return self.masker.num_clones

    # ------------------------------------------------------------------ steps
    def frontend(self, wav: torch.Tensor, sample_lengths: torch.Tensor | None):
        """wav (B, S) -> (CNN features (B, T, C), normed (B, T, C), local (B, T, D), padding)."""
        cnn_features, padding_mask = self.model.extract_cnn_features(wav, sample_lengths)
        if self.feature_grad_mult != 1.0:
            cnn_features = scale_gradient(cnn_features, self.feature_grad_mult)
        normed, local = self.model.project_features(cnn_features)
        return cnn_features, normed, local, padding_mask

    def clone_masks(
        self, mask: torch.Tensor | None, local: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The batch's (B * M, T) mask, drawn by the masker when None, checked otherwise."""
        batch, frames = local.shape[:2]
        lengths = torch.full((batch,), frames) if padding_mask is None else (~padding_mask).sum(1)
        if mask is None:
            return self.masker(lengths.cpu(), frames).to(local.device)
        expected = (batch * self.num_clones, frames)
        if mask.dtype != torch.bool or tuple(mask.shape) != expected:
            raise ValueError(
                f"mask must be a bool tensor of shape {expected} (B * num_clones, T), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if (
            padding_mask is not None
            and (mask & padding_mask.repeat_interleave(self.num_clones, 0)).any()
        ):
            raise ValueError("mask selects padded frames; mask only frames within each length")
        return mask

    def student_predictions(
        self,
        local: torch.Tensor,
        padding_mask: torch.Tensor | None,
        mask: torch.Tensor,
        layer_keep: torch.Tensor | None,
    ) -> torch.Tensor:
        """Sparse student + decoder over the clones: local (B, T, D) -> (B * M, T, D)."""
        clones = local.repeat_interleave(self.num_clones, 0)
        clone_padding = None
        if padding_mask is not None:
            clone_padding = padding_mask.repeat_interleave(self.num_clones, 0)
        student, kept = self.model.encoder.encode_kept(clones, ~mask, clone_padding, layer_keep)
        states = self.decoder_dropout(student.last_hidden_state)
        full = restore_with_noise(states, kept, local.shape[1], self.mask_noise_std)
        return self.decoder(full, clone_padding)

    def teacher_source(self) -> nn.Module:
        """What the EMA teacher averages: ``model.encoder``, or ``model`` with its own CNN."""
        if self.teacher_input == "own_feature_encoder":
            return self.model
        return self.model.encoder

    def teacher_targets(
        self,
        local: torch.Tensor,
        padding_mask: torch.Tensor | None,
        wav: torch.Tensor | None = None,
        sample_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher on the un-cloned local features (B, T, D), or on the waveform (B, S) through
        its own CNN -> fp32 targets (B, T, D)."""
        if self.teacher_input == "own_feature_encoder":
            teacher_out = self.teacher(wav, sample_lengths)
        else:
            teacher_out = self.teacher(local.detach().float(), padding_mask)
        return self.target_builder(teacher_out.ffn_outputs, padding_mask)

    def regression_terms(
        self, predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """predictions (B * M, T, D), targets (B, T, D), mask (B * M, T) -> loss and statistics."""
        if not bool(mask.any()):
            raise ValueError("the mask selects no frame, so there is nothing to predict")
        pred = predictions[mask]
        target = targets.repeat_interleave(self.num_clones, 0)[mask]
        per_frame = regression_loss(pred, target, self.loss_beta, self.loss_scale)
        rows = mask.nonzero()[:, 0]
        return {
            "loss_regression": per_frame.mean(),
            "per_utterance_loss": per_utterance_mean(
                per_frame.detach(), rows, mask.shape[0], self.num_clones
            ),
            "target_var": frame_std(target),
            "pred_var": frame_std(pred.detach().float()),
            "num_masked": torch.tensor(int(rows.numel()), device=pred.device),
            "pred": pred,
            "target": target,
        }

    def frame_statistics(
        self,
        cnn_features: torch.Tensor,
        normed: torch.Tensor,
        mask: torch.Tensor,
        padding_mask: torch.Tensor | None,
        local: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``feature_penalty`` (mean squared CNN feature, with grad), ``cnn_std`` and
        ``masked_fraction`` (hidden share of the clones' valid frames) over valid frames; with
        ``local`` (B, T, D) also ``input_std`` (mean :func:`temporal_spread`) and
        ``variance_hinge`` (with grad)."""
        extra = {}
        if local is not None:
            extra = variance_floor_terms(local, padding_mask, self.variance_floor)
        if padding_mask is None:
            cnn_valid, normed_valid = cnn_features.flatten(0, 1), normed.flatten(0, 1)
            valid_frames = mask.numel()
        else:
            cnn_valid, normed_valid = cnn_features[~padding_mask], normed[~padding_mask]
            valid_frames = int((~padding_mask).sum()) * self.num_clones
        return {
            "feature_penalty": cnn_valid.float().square().mean(),
            "cnn_std": frame_std(normed_valid.detach()),
            "masked_fraction": torch.tensor(float(mask.sum()) / max(valid_frames, 1)),
            **extra,
        }

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        wav: torch.Tensor,
        sample_lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One data2vec 2.0 step.

        Arguments
        ---------
        wav : Tensor (B, S)
            Waveforms, zero padded on the right.
        sample_lengths : LongTensor (B,), optional
            Valid samples per utterance; None means no padding.
        mask : BoolTensor (B * M, T), optional
            Hidden frames of every clone (row b * M + m), e.g. precomputed by the data pipeline;
            drawn by ``masker`` when None.
        layer_keep : BoolTensor (L,), optional
            LayerDrop decisions of the student.

        Returns
        -------
        dict: ``loss`` and the scalar statistics ``loss_regression``, ``feature_penalty``,
        ``target_var``, ``pred_var``, ``cnn_std``, ``num_masked``, ``masked_fraction``,
        ``ema_decay``; ``per_utterance_loss`` (B,).
        """
        cnn_features, normed, local, padding_mask = self.frontend(wav, sample_lengths)
        mask = self.clone_masks(mask, local, padding_mask)
        predictions = self.student_predictions(local, padding_mask, mask, layer_keep)
        targets = self.teacher_targets(local, padding_mask, wav, sample_lengths)
        terms = self.regression_terms(predictions, targets, mask)
        frames = self.frame_statistics(cnn_features, normed, mask, padding_mask, local)
        loss = terms["loss_regression"]
        if self.feature_penalty_weight > 0:
            loss = loss + self.feature_penalty_weight * frames["feature_penalty"]
        if self.variance_floor > 0:
            loss = loss + self.variance_weight * frames["variance_hinge"]
        return {
            "loss": loss,
            "loss_regression": terms["loss_regression"].detach(),
            "target_var": terms["target_var"],
            "pred_var": terms["pred_var"],
            "num_masked": terms["num_masked"],
            "ema_decay": torch.tensor(self.teacher.decay),
            "per_utterance_loss": terms["per_utterance_loss"],
            **{k: v.detach() for k, v in frames.items()},
        }
