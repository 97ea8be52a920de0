"""Small heads on the weighted layer sum: CTC over characters, speaker classification."""

from __future__ import annotations

import torch
from speechbrain.dataio.dataio import length_to_mask
from torch import nn

__all__ = ["CTCProbeHead", "SpeakerProbeHead"]


class CTCProbeHead(nn.Module):
    """(B, T, D), frame lengths (B,) -> log-probabilities (B, T, V): a projection, two 1-D
    convolutions over time (kernel 5: about 0.2 s of context in all) and a linear layer. A
    convolutional stand-in for SUPERB's BiLSTM head, several times cheaper on one CPU thread."""

    def __init__(self, input_dim: int, vocab_size: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.project = nn.Linear(input_dim, hidden)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel_size=5, padding=2) for _ in range(2)
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = length_to_mask(lengths, x.shape[1], dtype=torch.bool, device=x.device).unsqueeze(1)
        x = self.dropout(torch.relu(self.project(x))).transpose(1, 2)
        for conv in self.convs:
            # zero the padding first, so an utterance scores the same alone as in a batch
            x = self.dropout(torch.relu(conv(x * valid)))
        return torch.log_softmax(self.output(x.transpose(1, 2)), dim=-1)


class SpeakerProbeHead(nn.Module):
    """(B, T, D), frame lengths (B,) -> speaker logits (B, S): mean over valid frames, linear."""

    def __init__(self, input_dim: int, num_speakers: int) -> None:
        super().__init__()
        self.output = nn.Linear(input_dim, num_speakers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = length_to_mask(lengths, x.shape[1], dtype=torch.bool, device=x.device)
        pooled = (x * valid.unsqueeze(-1)).sum(1) / lengths.unsqueeze(-1).to(x.dtype)
        return self.output(pooled)
