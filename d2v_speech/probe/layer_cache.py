"""Every layer's output of a frozen encoder, computed once per utterance and kept in memory.

A probe trains only a small head, so the encoder runs once per utterance instead of once per
update: the hidden states of all L + 1 positions (the transformer's input and each layer's
output) are cached as float16 (L + 1, T, D) tensors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from d2v_speech.data.pipelines import normalize_waveform, read_mono_16k
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel

__all__ = ["CachedUtterance", "encode_layers", "collate_layers"]

logger = logging.getLogger(__name__)


@dataclass
class CachedUtterance:
    utt_id: str
    layers: torch.Tensor  # (L + 1, T, D) float16
    label: str | int  # transcript or speaker index


@torch.no_grad()
def encode_layers(
    encoder: Data2VecAudioModel,
    items: Sequence[tuple[str, str, str | int]],
    normalize: bool,
    name: str = "",
) -> list[CachedUtterance]:
    """Run the frozen encoder (eval mode) over (utt_id, wav path, label) items one at a time."""
    encoder.eval()
    cached, start, audio = [], time.monotonic(), 0.0
    for utt_id, path, label in items:
        wav = torch.from_numpy(read_mono_16k(path))
        audio += wav.shape[0] / 16000
        if normalize:
            wav = normalize_waveform(wav)
        states = encoder(wav.unsqueeze(0)).hidden_states
        layers = torch.stack([s[0] for s in states]).to(torch.float16)
        cached.append(CachedUtterance(utt_id, layers, label))
    logger.info(
        "encoded %s: %d utterances, %.0f s of audio in %.1f s",
        name, len(cached), audio, time.monotonic() - start,
    )  # fmt: skip
    return cached


def collate_layers(batch: Sequence[CachedUtterance]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Pad along time: -> (layers (B, L + 1, T_max, D) float32, frame lengths (B,), labels)."""
    lengths = torch.tensor([item.layers.shape[1] for item in batch])
    num_layers, _, dim = batch[0].layers.shape
    padded = torch.zeros(len(batch), num_layers, int(lengths.max()), dim)
    for row, item in enumerate(batch):
        padded[row, :, : item.layers.shape[1]] = item.layers.float()
    return padded, lengths, [item.label for item in batch]
