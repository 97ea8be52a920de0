"""Checks that one audio file is usable speech data: readable, 16 kHz, mono, long enough.

The header (``soundfile.info``) catches a corrupt or non-audio file, a wrong sample rate, extra
channels and clips too short for the CNN's receptive field. A file whose header is intact but
whose body is truncated or damaged is only caught with ``decode=True``, which reads every sample
(and also rejects NaN/inf samples in float files) and notes audio that is usable but suspect:
silent, constant or clipped (``AudioFacts.warnings``). Preparation decodes by default
(``verify_audio``): FLAC decodes at about 6,000x real time per core.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

EXPECTED_SAMPLE_RATE = 16000
# The wav2vec 2.0 / data2vec CNN's receptive field: 400 samples (25 ms at 16 kHz) make one frame.
MIN_SAMPLES = 400
SILENT_PEAK = 1e-4  # fraction of full scale
CLIPPED_FRACTION = 0.01  # of samples at full scale


class AudioProblem(ValueError):
    """An audio file that cannot be used; ``kind`` is a short machine-readable category."""

    def __init__(self, kind: str, path: Path | str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.kind = kind
        self.path = str(path)
        self.detail = detail


@dataclass(frozen=True)
class AudioFacts:
    """What preparation needs to know about a good file."""

    frames: int
    sample_rate: int
    channels: int
    warnings: tuple[str, ...] = ()  # with decode: "silent", "constant", "clipped"

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def inspect_audio(
    path: Path | str, expected_sample_rate: int = EXPECTED_SAMPLE_RATE, decode: bool = False
) -> AudioFacts:
    """Facts about ``path``, or :class:`AudioProblem` naming the file and what is wrong.

    Kinds: ``unreadable_audio``, ``wrong_sample_rate``, ``not_mono``, ``empty_audio``,
    ``too_short`` (under :data:`MIN_SAMPLES`), and with ``decode`` also ``corrupt_audio`` and
    ``non_finite_audio``.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioProblem("unreadable_audio", path, f"cannot read audio header: {error}") from None
    if info.samplerate != expected_sample_rate:
        raise AudioProblem(
            "wrong_sample_rate",
            path,
            f"sample rate {info.samplerate} Hz, expected {expected_sample_rate} Hz",
        )
    if info.channels != 1:
        raise AudioProblem("not_mono", path, f"{info.channels} channels, expected mono")
    if info.frames <= 0:
        raise AudioProblem("empty_audio", path, "no samples")
    if info.frames < MIN_SAMPLES:
        raise AudioProblem(
            "too_short",
            path,
            f"{info.frames} samples, shorter than the CNN's receptive field ({MIN_SAMPLES})",
        )
    facts = AudioFacts(int(info.frames), int(info.samplerate), int(info.channels))
    if decode:
        samples = _decode_fully(path, facts)
        facts = AudioFacts(facts.frames, facts.sample_rate, facts.channels, quality(samples))
    return facts


def quality(samples: np.ndarray) -> tuple[str, ...]:
    """Warnings about decoded float samples (T, C) in [-1, 1]: ``silent`` (peak under
    :data:`SILENT_PEAK`), ``constant`` (one value throughout, not zero), ``clipped`` (more than
    :data:`CLIPPED_FRACTION` of the samples at full scale)."""
    magnitude = np.abs(samples)
    peak = float(magnitude.max())
    if peak < SILENT_PEAK:
        return ("silent",)
    if float(samples.max() - samples.min()) == 0.0:
        return ("constant",)
    if float(np.mean(magnitude >= 0.999)) > CLIPPED_FRACTION:
        return ("clipped",)
    return ()


def _decode_fully(path: Path | str, facts: AudioFacts) -> np.ndarray:
    """Every sample (T, C); raise if decoding fails, stops early or yields NaN/inf."""
    try:
        samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioProblem("corrupt_audio", path, f"decoding failed: {error}") from None
    if len(samples) != facts.frames:
        raise AudioProblem(
            "corrupt_audio", path, f"decoded {len(samples)} samples, header says {facts.frames}"
        )
    if not np.all(np.isfinite(samples)):
        raise AudioProblem("non_finite_audio", path, "contains NaN or infinite samples")
    return samples
