"""Span masker of data2vec 1.0 / wav2vec 2.0: the masker part of a v1 objective's YAML.

A thin holder of the settings of :func:`~d2v_speech.ssl.masking.compute_span_mask` (same draws,
same generator), so that a YAML passes the masking to an objective as one part::

    masker: !new:d2v_speech.ssl.span_masker.SpanMasker
        mask_prob: 0.65
        mask_length: 10
        min_masks: 1

Every row gets the batch's smallest masked count (``require_same_masks``), which data2vec-aqc
needs to draw its negatives within an utterance.

Example
-------
>>> import torch
>>> masker = SpanMasker(mask_prob=0.65, mask_length=10)
>>> mask = masker((2, 50), torch.tensor([50, 30]), generator=torch.Generator().manual_seed(0))
>>> mask.shape, bool(mask[1, 30:].any()), int(mask[0].sum()) == int(mask[1].sum())
(torch.Size([2, 50]), False, True)
"""

from __future__ import annotations

import torch

from d2v_speech.ssl.masking import compute_span_mask

__all__ = ["SpanMasker"]


class SpanMasker:
    """Span masks (fairseq ``compute_mask_indices``) of a batch, never on padding.

    Arguments
    ---------
    mask_prob : float
        Expected fraction of frames that start a span, times ``mask_length`` (0.65: ~49 %).
    mask_length : int
        Span length in frames.
    min_masks : int
        Minimum number of spans per row.
    """

    def __init__(self, mask_prob: float = 0.65, mask_length: int = 10, min_masks: int = 1) -> None:
        # the same checks compute_span_mask makes, at construction instead of the first step
        compute_span_mask((0, 0), None, mask_prob, mask_length, min_masks)
        self.mask_prob = float(mask_prob)
        self.mask_length = int(mask_length)
        self.min_masks = int(min_masks)

    def __call__(
        self,
        shape: tuple[int, int],
        frame_lengths: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """shape (B, T), frame_lengths (B,) valid frames (None: all T) -> (B, T) bool mask.

        On ``frame_lengths``' device when given, else CPU; draws from ``generator`` (None: the
        global generator).
        """
        return compute_span_mask(
            tuple(shape),
            frame_lengths,
            mask_prob=self.mask_prob,
            mask_length=self.mask_length,
            min_masks=self.min_masks,
            generator=generator,
        )

    def __repr__(self) -> str:
        return (
            f"SpanMasker(mask_prob={self.mask_prob}, mask_length={self.mask_length}, "
            f"min_masks={self.min_masks})"
        )
