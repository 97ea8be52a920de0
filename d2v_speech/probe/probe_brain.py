"""SpeechBrain Brains that train a probe (weighted layer sum + head) on cached layers.

``modules``: ``featurizer`` (:class:`~d2v_speech.probe.featurizer.LayerWeightedSum`) and
``head``; batches are :func:`~d2v_speech.probe.layer_cache.collate_layers` tuples. The encoder
is not among the modules: it ran once, frozen, to fill the cache.
"""

from __future__ import annotations

import speechbrain as sb
import torch

from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.scoring import score

__all__ = ["CTCProbeBrain", "SpeakerProbeBrain"]


class _ProbeBrain(sb.Brain):
    def compute_forward(self, batch, stage):
        layers, lengths, _ = batch
        features = self.modules.featurizer(layers.to(self.device))
        return self.modules.head(features, lengths.to(self.device))

    @torch.no_grad()
    def predictions(self, loader):
        """Yield (outputs, frame lengths, labels) over a loader in eval mode."""
        self.modules.eval()
        for batch in loader:
            yield self.compute_forward(batch, sb.Stage.TEST), batch[1], batch[2]

    def layer_weights(self) -> list[float]:
        return [round(w, 4) for w in self.modules.featurizer.layer_weights().tolist()]


class CTCProbeBrain(_ProbeBrain):
    """CTC over characters; ``hparams.vocabulary`` is a LetterVocabulary."""

    def compute_objectives(self, log_probs, batch, stage):
        _, lengths, texts = batch
        vocabulary = self.hparams.vocabulary
        targets = [torch.tensor(vocabulary.encode(text)) for text in texts]
        return torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1).float(),
            torch.cat(targets),
            lengths,
            torch.tensor([len(t) for t in targets]),
            blank=vocabulary.blank_index,
            zero_infinity=True,
        )

    def score(self, loader) -> dict:
        """Greedy CER / WER (%) of a loader's utterances."""
        decoder = GreedyDecoder(self.hparams.vocabulary)
        references, hypotheses = [], []
        for log_probs, lengths, texts in self.predictions(loader):
            hypotheses += decoder(log_probs, lengths)
            references += [self.hparams.vocabulary.normalize(text) for text in texts]
        rates = score(references, hypotheses)
        return {"cer": round(rates.cer, 2), "wer": round(rates.wer, 2)}


class SpeakerProbeBrain(_ProbeBrain):
    """Speaker identification over the utterance-mean of the weighted layer sum."""

    def compute_objectives(self, logits, batch, stage):
        return torch.nn.functional.cross_entropy(logits, torch.tensor(batch[2]))

    def score(self, loader) -> dict:
        """Accuracy (%) on a loader's utterances."""
        correct = total = 0
        for logits, _, speakers in self.predictions(loader):
            correct += int((logits.argmax(-1) == torch.tensor(speakers)).sum())
            total += len(speakers)
        return {"accuracy": round(100.0 * correct / max(total, 1), 2)}
