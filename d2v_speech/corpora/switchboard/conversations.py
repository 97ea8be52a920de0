"""Switchboard-1 conversations: ms98 transcripts + LDC97S62 audio -> CSV rows per conversation.

Speakers are the ``conv_tab.csv`` callers when known (side A, side B), else the conversation
side (``sw02001A``). Problems are kept per conversation, so that the split can file each one
with the CSV (train or dev) that the conversation ends up in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from d2v_speech.corpora.corpus_scan import Problem
from d2v_speech.corpora.switchboard.rows import Rows, normalised_words, segment_row
from d2v_speech.corpora.switchboard.sources import (
    MS98_FILE,
    MS98_SUFFIX,
    Segment,
    SwitchboardParts,
    conversation_name,
    files_with_suffix,
    index_audio,
    inspect_all,
    read_conv_tab,
    read_ms98,
)
from d2v_speech.corpora.switchboard.text_normalization import normalize_ms98


@dataclass
class Conversation:
    """Rows of one Switchboard conversation (both sides) and its callers."""

    name: str
    callers: tuple[str, ...]
    rows: list[dict] = field(default_factory=list)
    filtered_by_duration: int = 0

    @property
    def seconds(self) -> float:
        return sum(row["duration"] for row in self.rows)


def _in_duration(row: dict, min_duration: float | None, max_duration: float | None) -> bool:
    too_short = min_duration is not None and row["duration"] < min_duration
    too_long = max_duration is not None and row["duration"] > max_duration
    return not (too_short or too_long)


def collect_conversations(
    parts: SwitchboardParts,
    keep_partial: bool,
    min_duration: float | None,
    max_duration: float | None,
) -> tuple[dict[str, Conversation], Rows, dict[str, list[Problem]]]:
    """Read transcripts, check audio, and build the rows of every usable conversation.

    Returns the usable conversations, a report of problems that belong to no single
    conversation (plus counts), and the problems of each conversation.
    """
    report = Rows()
    by_conversation: dict[str, list[Problem]] = defaultdict(list)
    audio, problems = index_audio(parts.swbd_audio)
    report.problems += problems
    callers: dict[str, tuple[str, str]] = {}
    if parts.conv_tab:
        callers, problems = read_conv_tab(parts.conv_tab)
        report.problems += problems
    transcripts = files_with_suffix(parts.ms98, MS98_SUFFIX)
    if not transcripts:
        raise FileNotFoundError(f"no *{MS98_SUFFIX} files under {parts.ms98}")
    segments_by_conversation: dict[str, list[Segment]] = defaultdict(list)
    for path in transcripts:
        segments, problems = read_ms98(path)
        name = MS98_FILE.fullmatch(path.name)
        if not name:
            report.problems += problems
            continue
        conversation = conversation_name(name.group(1))
        by_conversation[conversation] += problems
        if conversation not in audio:
            by_conversation[conversation].append(
                Problem("missing_audio", str(path), f"no {conversation}.sph in {parts.swbd_audio}")
            )
            continue
        segments_by_conversation[conversation] += segments
    facts, problems = inspect_all(
        (audio[name] for name in segments_by_conversation), "Switchboard (LDC97S62)"
    )
    for problem in problems:
        by_conversation[Path(problem.file).stem.lower()].append(problem)

    conversations: dict[str, Conversation] = {}
    for name in sorted(segments_by_conversation):
        path = audio[name]
        if path not in facts:
            continue
        sides = callers.get(name)
        conversation = Conversation(name, sides or (f"{name}A", f"{name}B"))
        found = Rows()
        for segment in sorted(segments_by_conversation[name], key=lambda s: s.utterance_id):
            if sides:
                segment = replace(segment, speaker=sides[0 if segment.channel == "A" else 1])
            words = normalised_words(segment, lambda t: normalize_ms98(t, keep_partial), found)
            if words is None:
                continue
            row = segment_row(segment, words, path, facts[path], parts.data_folder)
            if isinstance(row, Problem):
                found.problems.append(row)
            elif _in_duration(row, min_duration, max_duration):
                conversation.rows.append(row)
            else:
                conversation.filtered_by_duration += 1
        by_conversation[name] += found.problems
        report.counts.update(found.counts)
        if conversation.rows:
            conversations[name] = conversation
    return conversations, report, dict(by_conversation)
