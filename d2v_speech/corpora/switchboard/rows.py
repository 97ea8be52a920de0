"""Switchboard / Hub5'00 CSV rows: one transcript segment -> one row of :data:`CSV_COLUMNS`.

``start``/``stop`` are samples at the file's own rate (times are rounded, not truncated);
``wav`` is ``$swbd_root/<path relative to data_folder>`` (absolute for a file outside it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from d2v_speech.corpora.corpus_scan import Problem
from d2v_speech.corpora.switchboard.sources import AudioFacts, Segment
from d2v_speech.corpora.switchboard.text_normalization import TranscriptError

CSV_COLUMNS = ("ID", "duration", "wav", "start", "stop", "channel", "spk_id", "wrd")
PLACEHOLDER = "swbd_root"
#: segments ending at most this far (s) past the audio are clipped, not dropped
END_TOLERANCE = 0.1


@dataclass
class Rows:
    """CSV rows plus the problems and counts gathered while making them."""

    rows: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def _wav_field(path: Path, data_folder: Path) -> str:
    """``$swbd_root/<relative path>`` when under data_folder, else the absolute path."""
    try:
        return f"${PLACEHOLDER}/" + path.resolve().relative_to(data_folder.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def segment_row(
    segment: Segment, words: str, audio: Path, facts: AudioFacts, data_folder: Path
) -> dict | Problem:
    """The CSV row of one segment, or a problem when it lies outside the audio."""
    start = round(segment.begin * facts.sample_rate)
    stop = round(segment.end * facts.sample_rate)
    if stop > facts.frames:
        if start >= facts.frames or stop - facts.frames > END_TOLERANCE * facts.sample_rate:
            return Problem(
                "segment_past_end",
                segment.where,
                f"{segment.utterance_id} ends at {segment.end:.3f} s but {audio} has "
                f"{facts.frames / facts.sample_rate:.3f} s",
            )
        stop = facts.frames
    return {
        "ID": segment.utterance_id,
        "duration": round((stop - start) / facts.sample_rate, 6),
        "wav": _wav_field(audio, data_folder),
        "start": start,
        "stop": stop,
        "channel": segment.channel,
        "spk_id": segment.speaker,
        "wrd": words,
    }


def normalised_words(segment: Segment, normalise: Callable[[str], str], result: Rows) -> str | None:
    """The segment's normalised words; None (recorded in ``result``) when unusable or empty."""
    try:
        words = normalise(segment.words)
    except TranscriptError as error:
        result.problems.append(Problem("unnormalisable_text", segment.where, str(error)))
        return None
    if not words:
        result.counts["empty_after_normalisation"] += 1
        return None
    return words
