"""CTC decoding: greedy (best path), lexicon beam search with a KenLM word n-gram LM, and
SpeechBrain's lexicon-free prefix beam search.

- `GreedyDecoder`: argmax per frame, repeats merged, blanks dropped.
- `LexiconDecoder`: the decoder of the data2vec papers' LM results (letters constrained to the
  words of a lexicon, shallow fusion with a 4-gram): torchaudio's `ctc_decoder` on
  flashlight-text (in requirements.txt). Build the LM and lexicon with `d2v_speech.lm`.
- `BeamSearchDecoder`: SpeechBrain's `CTCPrefixBeamSearcher`, also for SentencePiece units; its
  optional n-gram LM needs `pip install -r requirements-lm.txt` (kenlm builds from source).
  `pyctcdecode` is not used: its release pins numpy < 2, which conflicts with this project's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["BeamSearchDecoder", "GreedyDecoder", "LexiconDecoder", "ctc_greedy_ids"]


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


class LexiconDecoder:
    """Lexicon-constrained CTC beam search with an optional KenLM word LM (flashlight-text).

    Hypotheses only spell words of the lexicon (`WORD<TAB>W O R D |` lines, e.g. from
    `d2v_speech.lm.ngram.write_lexicon`); each finished word adds
    `lm_weight * log10-LM score + word_score` to its acoustic log-probability.

    Parameters
    ----------
    vocabulary : LetterVocabulary
        Its blank (index 0) and word boundary `|` are the decoder's blank and silence.
    lexicon_path : path
    lm_path : path, optional
        KenLM ARPA or binary; None decodes with the lexicon alone.
    beam_size, beam_threshold : beam width and score margin for pruning hypotheses.
    lm_weight, word_score, unk_score : shallow-fusion weights (unk_score: out-of-lexicon words,
        -inf forbids them).
    """

    def __init__(
        self,
        vocabulary: Any,
        lexicon_path: str | Path,
        lm_path: str | Path | None = None,
        beam_size: int = 50,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        unk_score: float = -math.inf,
        beam_threshold: float = 25.0,
    ):
        if getattr(vocabulary, "kind", None) != "letters":
            raise ValueError(
                f"LexiconDecoder spells words in letters; this model's vocabulary is "
                f"{getattr(vocabulary, 'kind', type(vocabulary).__name__)!r}: use "
                "BeamSearchDecoder (SpeechBrain prefix beam search) instead"
            )
        for kind, path in (("lexicon", lexicon_path), ("LM", lm_path)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{kind} file {path} not found")
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        try:
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as error:
            raise ImportError(
                "LexiconDecoder needs flashlight-text: pip install flashlight-text"
            ) from error
        self.vocabulary = vocabulary
        self.lexicon_path = str(lexicon_path)
        self.lm_path = None if lm_path is None else str(lm_path)
        self.beam_size = beam_size
        self.lm_weight = lm_weight
        self.word_score = word_score
        self.unk_score = unk_score
        self.beam_threshold = beam_threshold
        self.decoder = ctc_decoder(
            lexicon=self.lexicon_path,
            tokens=list(vocabulary.tokens),
            lm=self.lm_path,
            beam_size=beam_size,
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            word_score=word_score,
            unk_score=unk_score,
            blank_token=vocabulary.tokens[vocabulary.blank_index],
            sil_token=vocabulary.space_token,
            unk_word="<unk>",
        )

    def with_weights(self, lm_weight: float, word_score: float) -> LexiconDecoder:
        """The same vocabulary, lexicon, LM and beam with other fusion weights."""
        return LexiconDecoder(
            self.vocabulary,
            self.lexicon_path,
            self.lm_path,
            self.beam_size,
            lm_weight,
            word_score,
            self.unk_score,
            self.beam_threshold,
        )

    def __call__(self, log_probs: torch.Tensor, frame_lengths: torch.Tensor) -> list[str]:
        """log_probs (B, T, V), frame_lengths (B,) valid frames -> B transcripts."""
        if log_probs.dim() != 3 or log_probs.shape[-1] != len(self.vocabulary):
            raise ValueError(
                f"expected log_probs of shape (B, T, {len(self.vocabulary)}), "
                f"got {tuple(log_probs.shape)}"
            )
        lengths = frame_lengths.detach().to("cpu", torch.int64).reshape(-1)
        if lengths.numel() != log_probs.shape[0]:
            raise ValueError(f"{lengths.numel()} frame lengths for {log_probs.shape[0]} rows")
        # flashlight reads `length` frames from raw memory: a bad length would read past the row
        if bool((lengths < 0).any()) or bool((lengths > log_probs.shape[1]).any()):
            raise ValueError(
                f"frame lengths must lie in [0, {log_probs.shape[1]}], got {lengths.tolist()}"
            )
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        hypotheses = self.decoder(emissions, lengths)
        return [" ".join(row[0].words) if row else "" for row in hypotheses]
