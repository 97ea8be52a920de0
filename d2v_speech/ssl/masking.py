"""Span masking for masked-prediction pretraining (fairseq ``compute_mask_indices`` semantics).

For each row with ``sz`` valid frames:

1. number of spans ``n = floor(mask_prob * sz / mask_length + u)``, ``u ~ U[0, 1)``, then
   ``n = max(min_masks, n)`` (probabilistic rounding, drawn per row);
2. ``n`` distinct span starts are drawn uniformly from ``[0, sz - mask_length)``; when that
   range holds no more than ``n`` starts it becomes ``[0, n + 1)`` (fairseq's rule);
3. each start covers ``mask_length`` frames; overlapping spans merge; frames ``>= sz`` are
   dropped, so padding is never masked.

Then, across the batch, ``require_same_masks`` randomly unmasks frames of the rows with more
masked frames until every row has the batch minimum, and ``mask_dropout`` unmasks that fraction
of each row's masked frames.

Short clips never crash (fairseq raises when a row ends up fully masked): spans are shortened
to ``sz - 1`` frames on rows with ``sz <= mask_length``, and a row that would still be fully
masked keeps one random frame visible. Only rows with fewer than 2 valid frames, which cannot
be masked while keeping anything visible, raise a ``ValueError``.
"""

from __future__ import annotations

import torch

__all__ = ["compute_span_mask", "compute_channel_mask"]


def _validate_args(mask_prob: float, mask_length: int, min_masks: int, mask_dropout: float) -> None:
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    if min_masks < 0:
        raise ValueError(f"min_masks must be >= 0, got {min_masks}")
    if not 0.0 <= mask_dropout < 1.0:
        raise ValueError(f"mask_dropout must be in [0, 1), got {mask_dropout}")


def _valid_lengths(shape: tuple[int, int], frame_lengths: torch.Tensor | None) -> list[int]:
    batch_size, num_frames = shape
    if batch_size < 0 or num_frames < 0:
        raise ValueError(f"shape must be non-negative (B, T), got {shape}")
    if frame_lengths is None:
        return [num_frames] * batch_size
    if frame_lengths.dim() != 1 or frame_lengths.shape[0] != batch_size:
        raise ValueError(
            f"frame_lengths must have shape ({batch_size},), got {tuple(frame_lengths.shape)}"
        )
    if frame_lengths.is_floating_point():
        raise ValueError("frame_lengths must hold integer frame counts, got a float tensor")
    lengths = frame_lengths.tolist()
    for row, length in enumerate(lengths):
        if not 0 <= length <= num_frames:
            raise ValueError(
                f"frame_lengths[{row}] = {length} is outside [0, {num_frames}] (T = {num_frames})"
            )
    return lengths


def _randint_below(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


def _row_span_indices(
    valid: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Sorted unique masked frame indices (int64) of one row with ``valid`` frames."""
    uniform = torch.rand((), generator=generator).item()
    num_spans = max(min_masks, int(mask_prob * valid / mask_length + uniform))
    if num_spans == 0:
        return torch.empty(0, dtype=torch.long)
    if valid < 2:
        raise ValueError(
            f"cannot mask a row with {valid} valid frame(s): at least 2 are needed so that one "
            "stays visible; drop clips shorter than ~2 CNN frames (about 720 samples at 16 kHz)"
        )
    span = min(mask_length, valid - 1)
    num_starts = valid - span
    if num_starts <= num_spans:
        num_starts = num_spans + 1  # fairseq's shrink rule for short rows
    starts = torch.randperm(num_starts, generator=generator)[:num_spans]
    frames = (starts[:, None] + torch.arange(span)).flatten()
    frames = torch.unique(frames[frames < valid])
    if frames.numel() >= valid:
        # Keep one frame visible: a fully masked row has nothing to predict from.
        frames = frames[frames != _randint_below(valid, generator)]
    return frames


def _random_subset(
    indices: torch.Tensor, count: int, generator: torch.Generator | None
) -> torch.Tensor:
    return indices[torch.randperm(indices.numel(), generator=generator)[:count]]


def compute_span_mask(
    shape: tuple[int, int],
    frame_lengths: torch.Tensor | None = None,
    mask_prob: float = 0.65,
    mask_length: int = 10,
    min_masks: int = 1,
    require_same_masks: bool = True,
    mask_dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a span mask, as fairseq ``compute_mask_indices`` (static lengths, overlaps allowed).

    Arguments
    ---------
    shape : tuple[int, int]
        ``(B, T)``: batch size and padded frame count.
    frame_lengths : torch.LongTensor | None
        ``(B,)`` valid frames per row; frames at or past the length are padding and never masked.
        ``None`` means every row has ``T`` valid frames.
    mask_prob : float
        Expected fraction of frames starting a span, times ``mask_length`` (0.65 masks ~49 %).
    mask_length : int
        Span length in frames.
    min_masks : int
        Minimum number of spans per row.
    require_same_masks : bool
        Randomly trim every row down to the batch's smallest masked count.
    mask_dropout : float
        Fraction of each row's masked frames to unmask afterwards (rounded to nearest).
    generator : torch.Generator | None
        CPU generator for reproducible masks.

    Returns
    -------
    torch.BoolTensor
        ``(B, T)``, True = masked; on ``frame_lengths.device`` when given, else CPU.

    Example
    -------
    >>> seeded = torch.Generator().manual_seed(0)
    >>> mask = compute_span_mask((2, 50), torch.tensor([50, 30]), generator=seeded)
    >>> bool(mask[1, 30:].any()), int(mask[0].sum()) == int(mask[1].sum())
    (False, True)
    """
    _validate_args(mask_prob, mask_length, min_masks, mask_dropout)
    lengths = _valid_lengths(shape, frame_lengths)
    batch_size, num_frames = shape
    rows = [
        _row_span_indices(valid, mask_prob, mask_length, min_masks, generator) for valid in lengths
    ]
    if require_same_masks and rows:
        target = min(row.numel() for row in rows)
        rows = [
            _random_subset(row, target, generator) if row.numel() > target else row for row in rows
        ]
    mask = torch.zeros(batch_size, num_frames, dtype=torch.bool)
    for index, row in enumerate(rows):
        if mask_dropout > 0 and row.numel() > 0:
            num_kept = row.numel() - round(row.numel() * mask_dropout)
            row = _random_subset(row, num_kept, generator)
        mask[index, row] = True
    if frame_lengths is not None:
        mask = mask.to(frame_lengths.device)
    return mask


def compute_channel_mask(
    batch_size: int,
    num_channels: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a feature-channel mask for fine-tuning (fairseq ``mask_channel_*`` settings).

    The same span algorithm runs over the channel axis (no padding, same count per row); expand it
    over time and zero the selected channels: ``x[mask[:, None, :].expand(-1, T, -1)] = 0``.

    Returns
    -------
    torch.BoolTensor
        ``(B, C)``, True = channel masked for every frame of that utterance.
    """
    return compute_span_mask(
        (batch_size, num_channels),
        None,
        mask_prob=mask_prob,
        mask_length=mask_length,
        min_masks=min_masks,
        require_same_masks=True,
        generator=generator,
    )
