"""The data2vec 1.0 speech objective: masked student regresses an EMA teacher's averaged layers.

A thin wiring of parts on the :mod:`~d2v_speech.ssl.data2vec1_engine` (see there for the step
and the parts)::

    objective: !new:d2v_speech.ssl.data2vec.Data2VecObjective
        model: !ref <model>
        masker: !new:d2v_speech.ssl.span_masker.SpanMasker
            mask_prob: 0.65
            mask_length: 10
        teacher: !new:d2v_speech.ssl.ema.EMATeacherSettings
            decay_start: 0.999
            decay_end: 0.9999
            anneal_steps: 30000
        target_builder: !new:d2v_speech.ssl.target_builder.TopKTargetBuilder
            top_k: 8
        predictor: !new:d2v_speech.ssl.final_proj_predictor.FinalProjPredictor

Example
-------
>>> import torch
>>> from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
>>> config = EncoderConfig(conv_layers=[(16, 10, 5), (16, 3, 2)], embed_dim=16, num_layers=2,
...                        num_heads=2, ffn_dim=32, pos_conv_depth=2, pos_conv_kernel=5,
...                        pos_conv_groups=4)
>>> objective = Data2VecObjective(
...     Data2VecAudioModel(config), target_builder=TopKTargetBuilder(top_k=2)
... )
>>> out = objective(torch.randn(2, 1600), torch.tensor([1600, 1200]))
>>> out["loss"].shape, out["per_utterance_loss"].shape
(torch.Size([]), torch.Size([2]))
"""

from __future__ import annotations

import torch

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.data2vec1_engine import (
    V1_PART_DEFAULTS,
    V1_SHORTHANDS,
    Data2Vec1Engine,
    FrontendOutput,
    compose_parts,
    scale_gradient,
    valid_frames,
)
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.final_proj_predictor import FinalProjPredictor
from d2v_speech.ssl.span_masker import SpanMasker
from d2v_speech.ssl.target_builder import TopKTargetBuilder

__all__ = ["Data2VecObjective", "FrontendOutput", "scale_gradient", "valid_frames"]


class Data2VecObjective(Data2Vec1Engine):
    """data2vec pretraining loss around a :class:`Data2VecAudioModel` (the student).

    Arguments
    ---------
    model : Data2VecAudioModel
        The network; its encoder seeds the EMA teacher.
    masker, teacher, target_builder, predictor : parts, optional
        As :class:`~d2v_speech.ssl.data2vec1_engine.Data2Vec1Engine`; None builds the part's
        default (data2vec Base), from any flat keywords that name its fields.
    loss_beta, loss_scale, feature_penalty_weight, feature_grad_mult : float
        As :class:`~d2v_speech.ssl.data2vec1_engine.Data2Vec1Engine`.
    variance_floor, variance_weight : float
        As :class:`~d2v_speech.ssl.data2vec1_engine.Data2Vec1Engine` (off by default; the tiny
        YAML sets a floor, without which its CNN output goes constant over time).
    **shorthands
        Flat fields of default parts (``mask_prob``, ``ema_decay``, ``average_top_k_layers``, ...;
        :data:`~d2v_speech.ssl.data2vec1_engine.V1_SHORTHANDS`).
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        masker: SpanMasker | None = None,
        teacher: EMATeacherSettings | None = None,
        target_builder: TopKTargetBuilder | None = None,
        predictor: FinalProjPredictor | None = None,
        loss_beta: float = 0.0,
        loss_scale: float | None = None,
        feature_penalty_weight: float = 0.0,
        feature_grad_mult: float = 1.0,
        variance_floor: float = 0.0,
        variance_weight: float = 1.0,
        **shorthands,
    ) -> None:
        given = {
            "masker": masker,
            "teacher": teacher,
            "target_builder": target_builder,
            "predictor": predictor,
        }
        parts = compose_parts(given, shorthands, V1_SHORTHANDS, V1_PART_DEFAULTS)
        super().__init__(
            model,
            **parts,
            loss_beta=loss_beta,
            loss_scale=loss_scale,
            feature_penalty_weight=feature_penalty_weight,
            feature_grad_mult=feature_grad_mult,
            variance_floor=variance_floor,
            variance_weight=variance_weight,
        )

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
            ``(B, T)`` frames to mask; drawn by the masker when None.
        layer_keep : torch.BoolTensor | None
            ``(L,)`` LayerDrop decisions for the student (training only).

        Returns
        -------
        dict[str, torch.Tensor]
            ``loss`` (scalar to backprop), ``loss_regression``, ``feature_penalty``,
            ``target_var``, ``pred_var``, ``cnn_std``, ``num_masked``, ``ema_decay`` (scalars)
            and ``per_utterance_loss`` (B,); with a variance floor also ``input_std`` and
            ``variance_hinge``.
        """
        front = self.frontend(wav, sample_lengths)
        mask = self.mask_for(front, sample_lengths, mask)
        student_out = self.student_encode(front.projected, front.padding_mask, mask, layer_keep)
        targets = self.teacher_targets(front.projected, front.padding_mask)
        terms = self.regression_terms(student_out, targets, mask)
        penalty = self.feature_penalty(front.cnn_features, front.padding_mask)
        floor = self.variance_terms(front)
        loss = terms["loss_regression"]
        if self.feature_penalty_weight > 0:
            loss = loss + self.feature_penalty_weight * penalty
        if floor:
            loss = loss + self.variance_weight * floor["variance_hinge"]
        return {
            "loss": loss,
            "loss_regression": terms["loss_regression"],
            "feature_penalty": penalty.detach(),
            **self.regression_statistics(terms, front),
            **{name: value.detach() for name, value in floor.items()},
        }
