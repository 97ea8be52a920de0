"""Training-time waveform augmentation for CTC fine-tuning (never used for scoring).

SpeechBrain's LibriSpeech CTC recipes perturb the speed of every training utterance; fairseq's
data2vec fine-tuning does not augment. Speed perturbation gives an utterance a new pitch, formants
and tempo (in effect a new voice); the aqc noise/reverberation augmenter can follow it. Neither
helped the tiny model at the demo's budget, so the YAMLs leave both off (see
docs/experiments/2026-12-01_trained_cnn_and_test_other.md). Each draw depends only on (seed,
utterance, epoch), so a resumed run sees the same audio.

Example
-------
>>> import math, torch
>>> augment = FinetuneAugmenter(speeds=[90, 110], seed=3)
>>> wav = torch.randn(16000)
>>> out = augment(wav, "utt-1")
>>> out.shape[0] in (math.ceil(16000 * 100 / 90), math.ceil(16000 * 100 / 110))
True
>>> torch.equal(out, augment(wav, "utt-1"))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchaudio

from d2v_speech.data.pipelines import item_key

__all__ = ["FinetuneAugmenter"]


class FinetuneAugmenter:
    """Speed perturbation, then an optional waveform augmenter; (S,) float -> (S',) float32.

    Arguments
    ---------
    speeds : sequence of int
        Speeds in percent, one drawn uniformly per utterance (100 = unchanged). Speed p resamples
        by 100/p, so 110 makes the clip 10 % shorter and its pitch 10 % higher.
    waveform_augmenter : callable (np.ndarray (S,), key: int) -> np.ndarray (S,), optional
        Applied after the speed change, e.g. `d2v_speech.augment.WaveformAugmenter`.
    seed : int
        Mixed into every draw.

    Attributes
    ----------
    epoch : int
        Set by the Brain at the start of each training epoch (before the loader forks its
        workers), so each epoch draws new perturbations.
    """

    def __init__(
        self,
        speeds: Sequence[int] = (90, 95, 100, 105, 110),
        waveform_augmenter: Callable | None = None,
        seed: int = 0,
    ):
        speeds = [int(s) for s in speeds]
        if not speeds or any(s <= 0 for s in speeds):
            raise ValueError(f"speeds must be positive percentages, got {speeds!r}")
        self.speeds = speeds
        self.waveform_augmenter = waveform_augmenter
        self.seed = seed
        self.epoch = 0
        # resampling by the integer ratio speed:100 (torchaudio reduces it by the gcd)
        self._resamplers = {
            s: torchaudio.transforms.Resample(orig_freq=s, new_freq=100) for s in speeds if s != 100
        }

    def __call__(self, wav: torch.Tensor, utt_id: str) -> torch.Tensor:
        """wav (S,) float, utt_id: the utterance's id -> augmented (S',) float32."""
        key = item_key(utt_id, self.epoch, self.seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, key]))
        speed = self.speeds[int(rng.integers(len(self.speeds)))]
        out = wav.float()
        if speed != 100:
            out = self._resamplers[speed](out.unsqueeze(0)).squeeze(0)
        if self.waveform_augmenter is not None:
            augmented = self.waveform_augmenter(out.numpy(), int(rng.integers(2**62)))
            out = torch.as_tensor(np.asarray(augmented, dtype=np.float32))
        return out
