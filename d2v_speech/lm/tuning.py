"""Grid search of the shallow-fusion weights (LM weight, word score) on a dev set.

The acoustic model runs once: its per-utterance log-probs are decoded again for every grid
point, and the point with the lowest WER (then CER, then grid order) wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.scoring import score

logger = get_logger(__name__)

__all__ = ["decode_log_probs", "tune_lm_weights"]

Decoder = Callable[[torch.Tensor, torch.Tensor], list[str]]


def decode_log_probs(decoder: Decoder, log_probs: Sequence[torch.Tensor]) -> list[str]:
    """Decode utterances one at a time: each (T_i, V) becomes a batch of one."""
    hypotheses = []
    for utterance in log_probs:
        if utterance.dim() != 2:
            raise ValueError(
                f"expected per-utterance log-probs (T, V), got {tuple(utterance.shape)}"
            )
        hypotheses += decoder(utterance[None], torch.tensor([utterance.shape[0]]))
    return hypotheses


def tune_lm_weights(
    log_probs: Sequence[torch.Tensor],
    references: Sequence[str],
    make_decoder: Callable[[float, float], Decoder],
    lm_weights: Sequence[float],
    word_scores: Sequence[float],
) -> tuple[float, float, list[dict[str, Any]]]:
    """Best (lm_weight, word_score) of the grid, and the table of every point's WER/CER (%).

    log_probs: one (T_i, V) tensor per utterance; references: their transcripts;
    make_decoder(lm_weight, word_score) -> a decoder `(B, T, V), (B,) -> list[str]`.
    """
    if not log_probs:
        raise ValueError("no utterance to tune the LM weights on")
    if len(log_probs) != len(references):
        raise ValueError(f"{len(log_probs)} log-prob tensors but {len(references)} references")
    if not lm_weights or not word_scores:
        raise ValueError("the grid needs at least one lm_weight and one word_score")
    table = []
    for lm_weight, word_score in itertools.product(lm_weights, word_scores):
        hypotheses = decode_log_probs(make_decoder(lm_weight, word_score), log_probs)
        rates = score(references, hypotheses)
        table.append(
            {"lm_weight": lm_weight, "word_score": word_score, "wer": rates.wer, "cer": rates.cer}
        )
        logger.info(
            "lm_weight %g, word_score %g: WER %.2f %%, CER %.2f %%",
            lm_weight,
            word_score,
            rates.wer,
            rates.cer,
        )
    # min() keeps the first of equal keys, so exact ties go to the earlier grid point
    best = min(table, key=lambda row: (row["wer"], row["cer"]))
    return best["lm_weight"], best["word_score"], table
