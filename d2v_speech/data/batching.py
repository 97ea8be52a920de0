"""Dynamic batching by audio length, configured the same way by every recipe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from speechbrain.dataio.sampler import DynamicBatchSampler


def _utterance_seconds(row: Mapping[str, Any]) -> float:
    return float(row["duration"])


def duration_batch_sampler(dataset, hparams: Mapping[str, Any]) -> DynamicBatchSampler:
    """Shuffled batches of at most `max_batch_seconds` of audio (and `max_batch_utterances`
    clips, if set) from `num_buckets` length buckets, seeded by `seed`.

    SpeechBrain wraps it for DDP (`DistributedSamplerWrapper`), so each rank gets its own batches.
    """
    return DynamicBatchSampler(
        dataset,
        max_batch_length=hparams["max_batch_seconds"],
        num_buckets=hparams["num_buckets"],
        length_func=_utterance_seconds,
        shuffle=True,
        batch_ordering="random",
        max_batch_ex=hparams.get("max_batch_utterances"),
        seed=hparams["seed"],
    )
