"""Segments of long recordings (Switchboard conversations): one channel, resampled to 16 kHz.

SPHERE files go through `d2v_speech.corpora.switchboard.sphere` (which refuses shorten-compressed
files with a clear remedy); any other soundfile format (wav, flac) is read directly.
"""

from __future__ import annotations

import functools

import numpy as np
import soundfile as sf
import torch
import torchaudio

from d2v_speech.corpora.switchboard.sphere import (
    CHANNEL_INDEX,
    SPHERE_MAGIC,
    SphereError,
    check_decodable,
)
from d2v_speech.data.pipelines import SAMPLE_RATE, AudioReadError


def _is_sphere(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(SPHERE_MAGIC)) == SPHERE_MAGIC


def read_segment(path: str, start: int, stop: int, channel: str) -> tuple[np.ndarray, int]:
    """Samples [start, stop) (at the file's rate) of channel A/B: (float32 (S,), sample rate).

    Errors name the file: SphereError for SPHERE files (shorten-compressed ones are refused
    from the header, with the remedy), AudioReadError for other formats.
    """
    try:
        is_sphere = _is_sphere(path)
    except OSError as err:
        raise AudioReadError(f"{path}: cannot open ({err})") from err
    error = SphereError if is_sphere else AudioReadError
    if is_sphere:
        check_decodable(path)
    if channel not in CHANNEL_INDEX:
        raise error(f"{path}: channel {channel!r}, expected one of {sorted(CHANNEL_INDEX)}")
    if not 0 <= start < stop:
        raise error(f"{path}: empty or negative segment [{start}, {stop})")
    try:
        samples, rate = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for broken files
        raise error(f"{path}: cannot decode audio ({err})") from err
    index = CHANNEL_INDEX[channel]
    if index >= samples.shape[1]:
        raise error(
            f"{path}: channel {channel} requested but the file has {samples.shape[1]} channel(s)"
        )
    if samples.shape[0] < stop - start:
        raise error(
            f"{path}: segment [{start}, {stop}) runs past the end of the file "
            f"({start + samples.shape[0]} samples)"
        )
    return samples[:, index], rate


@functools.lru_cache(maxsize=8)
def _resampler(rate: int) -> torchaudio.transforms.Resample:
    # built once per input rate: its sinc kernel is the costly part (SpeechBrain's recipe
    # rebuilds it for every utterance)
    return torchaudio.transforms.Resample(rate, SAMPLE_RATE)


def to_model_rate(samples: torch.Tensor, rate: int) -> torch.Tensor:
    """(S,) at `rate` -> (S * 16000 / rate,) at 16 kHz; unchanged when already 16 kHz."""
    if rate == SAMPLE_RATE:
        return samples
    with torch.no_grad():
        return _resampler(rate)(samples)
