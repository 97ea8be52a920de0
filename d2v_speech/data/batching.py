"""Dynamic batching by audio length, configured the same way by every recipe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from speechbrain.dataio.sampler import DynamicBatchSampler


def _utterance_seconds(row: Mapping[str, Any]) -> float:
    return float(row["duration"])


def duration_batch_sampler(
    dataset,
    *,
    max_batch_seconds: float,
    num_buckets: int,
    seed: int,
    max_batch_utterances: int | None = None,
) -> DynamicBatchSampler:
    """Shuffled batches of `dataset` (a SpeechBrain `DynamicItemDataset` whose rows have a
    `duration` in seconds) drawn from `num_buckets` length buckets.

    Arguments
    ---------
    max_batch_seconds : float
        Most audio per batch, in seconds (per device).
    num_buckets : int
        Number of length buckets.
    seed : int
        Seeds the shuffling (SpeechBrain adds the epoch).
    max_batch_utterances : int, optional
        Most clips per batch; None: no limit.

    SpeechBrain wraps it for DDP (`DistributedSamplerWrapper`), so each rank gets its own batches.
    """
    return DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_seconds,
        num_buckets=num_buckets,
        length_func=_utterance_seconds,
        shuffle=True,
        batch_ordering="random",
        max_batch_ex=max_batch_utterances,
        seed=seed,
    )
