"""Block masker of data2vec 2.0: M masks per utterance, each hiding exactly ``floor(R * T)`` frames.

For one utterance of T valid frames and each of its ``num_clones`` rows (fairseq
``compute_block_mask_1d``):

1. draw ``floor(T * (R + adjust) / L)`` block centres uniformly over ``[0, T)``, with replacement;
2. mark each centre and its neighbours at offsets ``-(L // 2) .. L - L // 2 - 1``, clamped to
   ``[0, T - 1]``;
3. bring the count to exactly ``floor(R * T)``: unmark excess frames uniformly among the marked
   ones, or mark missing frames uniformly among the unmarked ones.

Step 3 is one top-k of ``marked + U[0, 1)``: every marked frame outranks every unmarked one and
ties break uniformly, which is the same distribution. With R = 0.5, L = 5 and adjust = 0.05 the
blocks cover about 42 % and the top-up brings it to 50 %.

fairseq draws the masks from the uncropped length and then crops them, so rows of a cropped
batch end up with different counts and its ``len_keep`` of row 0 mis-assigns frames (reference
pitfall 6). Here masks are drawn after cropping, from each utterance's valid length, so every
count is exact and padding is never masked.

Example
-------
>>> import torch
>>> masker = BlockMasker(mask_prob=0.5, mask_length=5, num_clones=2)
>>> generator = torch.Generator().manual_seed(0)
>>> masks = masker(torch.tensor([20, 13]), num_frames=20, generator=generator)
>>> masks.shape, masks.sum(dim=1).tolist()
(torch.Size([4, 20]), [10, 10, 6, 6])
"""

from __future__ import annotations

import torch

__all__ = ["BlockMasker"]


class BlockMasker:
    """Masks of data2vec 2.0 (see the module docstring); rows ordered utterance-major.

    Arguments
    ---------
    mask_prob : float
        Fraction R of each utterance's frames hidden from the student (BASE: 0.5).
    mask_length : int
        Block width L (BASE: 5).
    mask_prob_adjust : float
        Extra centres, as a fraction of T (BASE: 0.05).
    num_clones : int
        Masked copies M of every utterance (fairseq ``clone_batch``; BASE: 8).
    """

    def __init__(
        self,
        mask_prob: float = 0.5,
        mask_length: int = 5,
        mask_prob_adjust: float = 0.05,
        num_clones: int = 8,
    ) -> None:
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        if mask_length < 1:
            raise ValueError(f"mask_length must be >= 1, got {mask_length}")
        if mask_prob_adjust < 0:
            raise ValueError(f"mask_prob_adjust must be >= 0, got {mask_prob_adjust}")
        if num_clones < 1:
            raise ValueError(f"num_clones must be >= 1, got {num_clones}")
        self.mask_prob = float(mask_prob)
        self.mask_length = int(mask_length)
        self.mask_prob_adjust = float(mask_prob_adjust)
        self.num_clones = int(num_clones)

    def num_masked(self, num_frames: int) -> int:
        """Frames hidden in each row of an utterance of ``num_frames`` valid frames."""
        return int(num_frames * self.mask_prob)

    def utterance_masks(
        self, num_frames: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(num_clones, num_frames) bool masks of one utterance, each with exactly
        :meth:`num_masked` True."""
        rows, length = self.num_clones, self.mask_length
        num_centres = int(num_frames * (self.mask_prob + self.mask_prob_adjust) / length)
        marked = torch.zeros(rows, num_frames)
        if num_centres > 0 and num_frames > 0:
            centres = torch.randint(0, num_frames, (rows, num_centres), generator=generator)
            offsets = torch.arange(-(length // 2), length - length // 2)
            spans = (centres.unsqueeze(-1) + offsets).clamp(0, num_frames - 1)
            marked.scatter_(1, spans.view(rows, -1), 1.0)
        rank = marked + torch.rand(rows, num_frames, generator=generator)
        chosen = rank.topk(self.num_masked(num_frames), dim=1).indices
        return torch.zeros(rows, num_frames, dtype=torch.bool).scatter_(1, chosen, True)

    def __call__(
        self,
        frame_lengths: torch.Tensor,
        num_frames: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Masks of a batch: frame_lengths (B,) valid frames -> (B * M, num_frames) bool.

        Row ``b * M + m`` is clone m of utterance b (the order of ``repeat_interleave``).
        """
        lengths = [int(n) for n in frame_lengths.tolist()]
        if any(not 0 <= n <= num_frames for n in lengths):
            raise ValueError(f"frame_lengths {lengths} must lie in [0, {num_frames}]")
        masks = torch.zeros(len(lengths) * self.num_clones, num_frames, dtype=torch.bool)
        for row, length in enumerate(lengths):
            start = row * self.num_clones
            masks[start : start + self.num_clones, :length] = self.utterance_masks(
                length, generator
            )
        return masks

    def __repr__(self) -> str:
        return (
            f"BlockMasker(mask_prob={self.mask_prob}, mask_length={self.mask_length}, "
            f"mask_prob_adjust={self.mask_prob_adjust}, num_clones={self.num_clones})"
        )
