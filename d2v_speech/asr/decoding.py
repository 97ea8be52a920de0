"""CTC decoding: greedy (best path) and beam search with an optional KenLM n-gram LM.

Beam search uses SpeechBrain's `CTCPrefixBeamSearcher`. An n-gram LM (ARPA or KenLM binary)
needs `pip install kenlm pygtrie` (kenlm is built from source by pip; neither is in
requirements.txt). `pyctcdecode` is not used: its release pins numpy < 2, which conflicts with
this project's numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["BeamSearchDecoder", "GreedyDecoder", "ctc_greedy_ids"]


def ctc_greedy_ids(
    log_probs: torch.Tensor, frame_lengths: torch.Tensor | None = None, blank_index: int = 0
) -> list[list[int]]:
    """Best path per utterance: argmax per frame, merge repeats, drop blanks.

    log_probs (B, T, V); frame_lengths (B,) valid frames (None: all T) -> B lists of unit ids.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"expected log_probs of shape (B, T, V), got {tuple(log_probs.shape)}")
    batch, num_frames, _ = log_probs.shape
    if frame_lengths is None:
        frame_lengths = torch.full((batch,), num_frames)
    best = log_probs.argmax(dim=-1).cpu()
    # a frame starts a new unit when it differs from the previous frame
    previous = torch.cat([torch.full((batch, 1), -1, dtype=best.dtype), best[:, :-1]], dim=1)
    keep = (best != previous) & (best != blank_index)
    results = []
    for row, length in enumerate(frame_lengths.tolist()):
        length = int(length)
        results.append(best[row, :length][keep[row, :length]].tolist())
    return results


class GreedyDecoder:
    """(log_probs (B, T, V), frame_lengths (B,)) -> list of B transcripts."""

    def __init__(self, vocabulary: Any):
        self.vocabulary = vocabulary

    def __call__(self, log_probs: torch.Tensor, frame_lengths: torch.Tensor) -> list[str]:
        ids = ctc_greedy_ids(log_probs, frame_lengths, self.vocabulary.blank_index)
        return [self.vocabulary.decode(row) for row in ids]


class BeamSearchDecoder:
    """CTC prefix beam search, optionally fused with a KenLM n-gram LM.

    Parameters
    ----------
    vocabulary : LetterVocabulary or SentencePieceVocabulary
    beam_size : int
    kenlm_model_path : str, optional
        ARPA or binary KenLM word LM; requires `pip install kenlm pygtrie`.
    alpha, beta : float
        LM weight and word insertion bonus (shallow fusion).
    beam_prune_logp, token_prune_min_logp : float
        SpeechBrain's pruning thresholds (lower keeps more hypotheses).
    """

    def __init__(
        self,
        vocabulary: Any,
        beam_size: int = 50,
        kenlm_model_path: str | None = None,
        alpha: float = 0.5,
        beta: float = 1.0,
        beam_prune_logp: float = -10.0,
        token_prune_min_logp: float = -5.0,
    ):
        if kenlm_model_path is not None:
            try:
                import kenlm  # noqa: F401
                import pygtrie  # noqa: F401
            except ImportError as error:
                raise ImportError(
                    "decoding with an n-gram LM needs kenlm and pygtrie: pip install kenlm pygtrie"
                ) from error
        from speechbrain.decoders.ctc import CTCPrefixBeamSearcher

        self.vocabulary = vocabulary
        self.searcher = CTCPrefixBeamSearcher(
            blank_index=vocabulary.blank_index,
            vocab_list=vocabulary.decoder_tokens(),
            space_token=vocabulary.space_token,
            kenlm_model_path=None if kenlm_model_path is None else str(kenlm_model_path),
            alpha=alpha,
            beta=beta,
            beam_size=beam_size,
            beam_prune_logp=beam_prune_logp,
            token_prune_min_logp=token_prune_min_logp,
        )

    def __call__(self, log_probs: torch.Tensor, frame_lengths: torch.Tensor) -> list[str]:
        relative = frame_lengths.float() / log_probs.shape[1]
        hypotheses = self.searcher(log_probs.float().cpu(), relative.cpu())
        return [self._text(row) for row in hypotheses]

    def _text(self, hypotheses: Sequence[Any]) -> str:
        text = hypotheses[0].text if hypotheses else ""
        return " ".join(text.replace(self.vocabulary.space_token, " ").split())
