"""Checks that one audio file is usable speech data: readable, 16 kHz, mono, not empty.

By default only the header is read (``soundfile.info``), which is fast and catches a corrupt or
non-audio file, a wrong sample rate and extra channels. A file whose header is intact but whose
body is truncated or damaged is only caught with ``decode=True``, which reads every sample
(and also rejects NaN/inf samples in float files); preparation exposes it as ``verify_audio``.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

EXPECTED_SAMPLE_RATE = 16000


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

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def inspect_audio(
    path: Path | str, expected_sample_rate: int = EXPECTED_SAMPLE_RATE, decode: bool = False
) -> AudioFacts:
    """Facts about ``path``, or :class:`AudioProblem` naming the file and what is wrong.

    Kinds: ``unreadable_audio``, ``wrong_sample_rate``, ``not_mono``, ``empty_audio``, and with
    ``decode`` also ``corrupt_audio`` and ``non_finite_audio``.
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
    facts = AudioFacts(int(info.frames), int(info.samplerate), int(info.channels))
    if decode:
        _decode_fully(path, facts)
    return facts


def _decode_fully(path: Path | str, facts: AudioFacts) -> None:
    """Read every sample; raise if decoding fails, stops early or yields NaN/inf."""
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
