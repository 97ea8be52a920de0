"""Negative sampler part of data2vec-aqc: distractors from the same utterance's masked frames.

::

    negative_sampler: !new:d2v_speech.ssl.negative_sampler.NegativeSampler
        num_negatives: 100

Example
-------
>>> import torch
>>> index = NegativeSampler(num_negatives=3)(torch.randn(2, 5, 4))
>>> index.shape, bool((index != torch.arange(5)).all())
(torch.Size([3, 2, 5]), True)
"""

from __future__ import annotations

import torch

from d2v_speech.ssl.negatives import sample_negatives

__all__ = ["NegativeSampler"]


class NegativeSampler:
    """Draws each masked frame's negatives uniformly among its utterance's other masked frames.

    Arguments
    ---------
    num_negatives : int
        Negatives per frame, drawn with replacement (fork: 100).
    """

    def __init__(self, num_negatives: int = 100) -> None:
        if isinstance(num_negatives, bool) or int(num_negatives) < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives!r}")
        self.num_negatives = int(num_negatives)

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        """candidates (B, M, C) -> (N, B, M) long: frame index of each negative in its utterance.

        Only the indices are drawn: a zero-width view spares gathering the (N, B, M, C) vectors
        (the contrastive loss gathers cosines instead). Uses the global generator.
        """
        _, neg_index = sample_negatives(candidates.detach()[..., :0], self.num_negatives)
        return neg_index

    def __repr__(self) -> str:
        return f"NegativeSampler(num_negatives={self.num_negatives})"
