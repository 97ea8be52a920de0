"""Speech to text with a fine-tuned model: `d2v_speech.transcribe(inputs, checkpoint)`.

Example (with a fine-tuning output folder)::

    import d2v_speech
    texts = d2v_speech.transcribe(["a.flac", waveform_16k], "results/finetune/tiny/1234")

Inputs are 16 kHz mono: file paths (any format soundfile reads) or float tensors of shape (S,)
or (1, S). The real-time factor (compute time / audio duration) is logged and kept in
`Transcriber.last_stats`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.decoding import BeamSearchDecoder, GreedyDecoder
from d2v_speech.asr.model_io import load_ctc_model
from d2v_speech.data.pipelines import SAMPLE_RATE, normalize_waveform, read_mono_16k

logger = get_logger(__name__)

__all__ = ["TranscriptionStats", "Transcriber", "transcribe"]

AudioInput = str | Path | torch.Tensor


@dataclass
class TranscriptionStats:
    """Audio seconds, compute seconds and their ratio (real-time factor) of the last call."""

    audio_seconds: float
    compute_seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.compute_seconds / max(self.audio_seconds, 1e-9)


class Transcriber:
    """A fine-tuned model loaded once, for many `transcribe` calls.

    Parameters
    ----------
    checkpoint : str or Path
        A fine-tuned model (see `d2v_speech.asr.model_io.load_ctc_model`).
    device : str
    beam_size : int, optional
        None decodes greedily; a number runs CTC prefix beam search.
    kenlm_model_path : str, optional
        n-gram LM for beam search (needs `pip install kenlm`).
    batch_size : int
    **beam_kwargs
        Further `BeamSearchDecoder` arguments (alpha, beta, pruning).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "cpu",
        beam_size: int | None = None,
        kenlm_model_path: str | None = None,
        batch_size: int = 8,
        **beam_kwargs: Any,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = load_ctc_model(checkpoint).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        vocabulary = self.model.vocabulary
        if beam_size is None and kenlm_model_path is None:
            self.decoder = GreedyDecoder(vocabulary)
        else:
            self.decoder = BeamSearchDecoder(
                vocabulary, beam_size or 50, kenlm_model_path, **beam_kwargs
            )
        self.last_stats: TranscriptionStats | None = None

    def _waveform(self, item: AudioInput, position: int) -> torch.Tensor:
        if isinstance(item, str | Path):
            wav = torch.from_numpy(read_mono_16k(str(item)))
            name = str(item)
        elif isinstance(item, torch.Tensor):
            name = f"input {position} (tensor)"
            if item.dim() == 2 and item.shape[0] == 1:
                item = item[0]
            if item.dim() != 1:
                raise ValueError(
                    f"{name}: expected a mono waveform of shape (S,) or (1, S), "
                    f"got {tuple(item.shape)}"
                )
            if not item.is_floating_point():
                raise ValueError(f"{name}: waveform must be floating point, got {item.dtype}")
            if not torch.isfinite(item).all():
                raise ValueError(f"{name}: contains NaN or infinite samples")
            wav = item.detach().float().cpu()
        else:
            raise TypeError(
                f"input {position}: expected a file path or a waveform tensor, "
                f"got {type(item).__name__}"
            )
        minimum = self.model.config.receptive_field
        if wav.shape[0] < minimum:
            raise ValueError(
                f"{name}: {wav.shape[0]} samples is shorter than the encoder's receptive field "
                f"({minimum} samples = {minimum / SAMPLE_RATE * 1000:.0f} ms at 16 kHz)"
            )
        return normalize_waveform(wav) if self.model.normalize else wav

    @torch.no_grad()
    def transcribe(self, inputs: AudioInput | Sequence[AudioInput]) -> list[str]:
        """Transcripts of `inputs`, in order (a single input gives a list of one)."""
        if isinstance(inputs, str | Path | torch.Tensor):
            inputs = [inputs]
        if len(inputs) == 0:
            raise ValueError("no input to transcribe")
        waveforms = [self._waveform(item, i) for i, item in enumerate(inputs)]
        started = time.perf_counter()
        # longest first in batches of similar lengths: less padding
        order = sorted(range(len(waveforms)), key=lambda i: -waveforms[i].shape[0])
        texts: list[str] = [""] * len(waveforms)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            lengths = torch.tensor([waveforms[i].shape[0] for i in chunk])
            batch = torch.zeros(len(chunk), int(lengths.max()))
            for row, index in enumerate(chunk):
                batch[row, : lengths[row]] = waveforms[index]
            output = self.model(batch.to(self.device), lengths.to(self.device))
            for index, text in zip(chunk, self.decoder(output.log_probs, output.frame_lengths)):
                texts[index] = text
        audio_seconds = sum(w.shape[0] for w in waveforms) / SAMPLE_RATE
        self.last_stats = TranscriptionStats(audio_seconds, time.perf_counter() - started)
        logger.info(
            "transcribed %.1f s of audio in %.2f s (real-time factor %.3f)",
            audio_seconds,
            self.last_stats.compute_seconds,
            self.last_stats.real_time_factor,
        )
        return texts


def transcribe(
    inputs: AudioInput | Sequence[AudioInput],
    checkpoint: str | Path,
    device: str = "cpu",
    beam_size: int | None = None,
    kenlm_model_path: str | None = None,
    batch_size: int = 8,
    **beam_kwargs: Any,
) -> list[str]:
    """Transcribe 16 kHz mono files or waveforms with a fine-tuned checkpoint (greedy by default).

    See `Transcriber` for the arguments; the real-time factor is logged at INFO level.
    """
    transcriber = Transcriber(
        checkpoint, device, beam_size, kenlm_model_path, batch_size, **beam_kwargs
    )
    return transcriber.transcribe(inputs)
