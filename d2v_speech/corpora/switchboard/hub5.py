"""Hub5'00 (eval2000) test rows: the STM reference + LDC2002S09 audio -> three test CSVs.

``sw_*`` recordings (Switchboard part) go to ``test_swbd.csv``, ``en_*`` (CallHome part) to
``test_callhome.csv``, both to ``test_eval2000.csv``; segments marked
``IGNORE_TIME_SEGMENT_IN_SCORING`` are left out and counted. Row ids are
``<recording>-<channel>_<start cs>-<end cs>``. All problems are filed with ``test_eval2000.csv``.
"""

from __future__ import annotations

from pathlib import Path

from d2v_speech.corpora.corpus_scan import Problem
from d2v_speech.corpora.switchboard.rows import Rows, normalised_words, segment_row
from d2v_speech.corpora.switchboard.sources import (
    Segment,
    SwitchboardParts,
    index_audio,
    inspect_all,
)
from d2v_speech.corpora.switchboard.text_normalization import is_ignored_segment, normalize_stm

TEST_CSVS = ("test_swbd.csv", "test_callhome.csv", "test_eval2000.csv")
STM_CHANNELS = {"A": "A", "B": "B", "1": "A", "2": "B"}
STM_SUBSETS = {"sw_": "test_swbd.csv", "en_": "test_callhome.csv"}


def read_stm(path: Path) -> tuple[list[Segment], list[Problem], int]:
    """Scored segments of an STM file, its bad lines, and the number of ignored segments.

    Lines: ``en_4156 A en_4156_A 357.64 359.64 <O,en,F,en-F> WORDS...`` (label optional).
    """
    segments, problems, ignored = [], [], 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith(";;"):
            continue
        where = f"{path}:{number}"
        fields = line.split()
        try:
            recording, channel, speaker = fields[0], STM_CHANNELS[fields[1]], fields[2]
            begin, end = float(fields[3]), float(fields[4])
        except (IndexError, KeyError, ValueError):
            problems.append(Problem("malformed_line", where, f"not an STM line: {line.strip()!r}"))
            continue
        if not 0 <= begin < end:
            problems.append(Problem("malformed_line", where, f"times {begin} .. {end}"))
            continue
        words = fields[6:] if len(fields) > 5 and fields[5].startswith("<") else fields[5:]
        text = " ".join(words)
        if is_ignored_segment(text):
            ignored += 1
            continue
        utterance_id = f"{recording}-{channel}_{round(begin * 100):06d}-{round(end * 100):06d}"
        segments.append(Segment(utterance_id, recording, channel, speaker, begin, end, text, where))
    return segments, problems, ignored


def prepare_eval2000(parts: SwitchboardParts) -> dict[str, Rows]:
    """Rows of test_swbd.csv, test_callhome.csv and test_eval2000.csv from the STM."""
    outputs = {name: Rows() for name in TEST_CSVS}
    report = outputs["test_eval2000.csv"]
    segments, problems, ignored = read_stm(parts.hub5_stm)
    report.problems += problems
    report.counts["ignored_segments"] += ignored
    audio, problems = index_audio(parts.hub5_audio)
    report.problems += problems
    needed = {s.recording.lower() for s in segments if s.recording.lower() in audio}
    facts, problems = inspect_all((audio[name] for name in needed), "Hub5'00 (LDC2002S09)")
    report.problems += problems
    missing_reported, seen_ids = set(), set()
    for segment in segments:
        subset = STM_SUBSETS.get(segment.recording[:3].lower())
        path = audio.get(segment.recording.lower())
        if subset is None:
            report.problems.append(
                Problem("unknown_subset", segment.where, f"{segment.recording} is not sw_* or en_*")
            )
            continue
        if path is None:
            if segment.recording not in missing_reported:
                missing_reported.add(segment.recording)
                report.problems.append(
                    Problem("missing_audio", segment.where, f"no {segment.recording}.sph")
                )
            continue
        if path not in facts:
            continue
        if segment.utterance_id in seen_ids:
            report.problems.append(
                Problem("duplicate_segment", segment.where, f"{segment.utterance_id} repeated")
            )
            continue
        words = normalised_words(segment, normalize_stm, report)
        if words is None:
            continue
        row = segment_row(segment, words, path, facts[path], parts.data_folder)
        if isinstance(row, Problem):
            report.problems.append(row)
            continue
        seen_ids.add(segment.utterance_id)
        outputs[subset].rows.append(row)
        report.rows.append(row)
    return outputs
