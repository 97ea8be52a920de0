"""Switchboard / Hub5'00 sources: where the LDC parts are, and reading them.

Finds the parts (:func:`find_parts`), indexes SPHERE audio by name (:func:`index_audio`), reads
``conv_tab.csv`` callers (:func:`read_conv_tab`) and ms98 transcript files (:func:`read_ms98`),
and checks SPHERE headers (:func:`inspect_sphere`, :func:`inspect_all`). Every bad file or line
becomes a :class:`~d2v_speech.corpora.corpus_scan.Problem` naming it, never an abort.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from d2v_speech.corpora.corpus_scan import Problem
from d2v_speech.corpora.switchboard.sphere import (
    SphereError,
    check_decodable,
    is_shorten,
    read_sphere_header,
)

SAMPLE_RATE = 8000
CHANNELS = 2
MS98_SUFFIX = "-ms98-a-trans.text"
MS98_FILE = re.compile(r"sw(\d+)([AB])-ms98-a-trans\.text")
MS98_ID = re.compile(r"sw(\d+)([AB])-ms98-a-\d+")
REMEDY = (
    "libsndfile cannot decode shorten-compressed SPHERE. Convert the files once with sph2pipe "
    "(ships with Kaldi and LDC), e.g. `sph2pipe -f sph -p IN.sph OUT.sph` for each file, keeping "
    "the folder layout, and point the preparation at the converted copy."
)


@dataclass(frozen=True)
class SwitchboardParts:
    """Where each part lives; None for a part that is absent."""

    data_folder: Path
    swbd_audio: Path | None
    ms98: Path | None
    conv_tab: Path | None
    hub5_audio: Path | None
    hub5_stm: Path | None
    hub5_glm: Path | None


@dataclass(frozen=True)
class AudioFacts:
    """What the SPHERE header says (frames = samples per channel)."""

    sample_rate: int
    channels: int
    frames: int


@dataclass(frozen=True)
class Segment:
    """One transcript line: times in seconds, raw words, and where it came from."""

    utterance_id: str
    recording: str
    channel: str
    speaker: str
    begin: float
    end: float
    words: str
    where: str


def _locate(given: str | Path | None, default: Path, option: str) -> Path | None:
    """The given path (which must exist), else the default when it exists, else None."""
    if given is None:
        return default if default.exists() else None
    if not Path(given).exists():
        raise FileNotFoundError(f"{option} {given} does not exist")
    return Path(given)


def find_parts(
    data_folder: str | Path,
    swbd_folder: str | Path | None = None,
    ms98_folder: str | Path | None = None,
    conv_tab: str | Path | None = None,
    hub5_audio_folder: str | Path | None = None,
    hub5_stm: str | Path | None = None,
    hub5_glm: str | Path | None = None,
) -> SwitchboardParts:
    """Locate the parts: a path given must exist; defaults follow the LDC layout."""
    root = Path(data_folder)
    swbd = _locate(swbd_folder, root / "LDC97S62", "swbd_folder")
    reference = root / "LDC2002T43" / "2000_hub5_eng_eval_tr" / "reference"
    stm = _locate(hub5_stm, reference / "hub5e00.english.000405.stm", "hub5_stm")
    glm_default = (stm.parent if stm else reference) / "en20000405_hub5.glm"
    if hub5_glm is None and not glm_default.exists() and glm_default.parent.is_dir():
        glm_default = next(iter(sorted(glm_default.parent.glob("*.glm"))), glm_default)
    docs = (swbd or root / "LDC97S62") / "docs"
    return SwitchboardParts(
        data_folder=root,
        swbd_audio=swbd,
        ms98=_locate(ms98_folder, root / "swb_ms98_transcriptions", "ms98_folder"),
        conv_tab=_locate(conv_tab, docs / "conv_tab.csv", "conv_tab"),
        hub5_audio=_locate(
            hub5_audio_folder, root / "LDC2002S09" / "hub5e_00" / "english", "hub5_audio_folder"
        ),
        hub5_stm=stm,
        hub5_glm=_locate(hub5_glm, glm_default, "hub5_glm"),
    )


def files_with_suffix(folder: Path, suffix: str) -> list[Path]:
    """Files under ``folder`` whose name ends with ``suffix`` (case-insensitive), sorted."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs.sort()
        found.extend(Path(directory) / n for n in sorted(files) if n.lower().endswith(suffix))
    return found


def index_audio(folder: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Lower-case file stem -> .sph path; a stem found twice is a problem (first kept)."""
    index: dict[str, Path] = {}
    problems = []
    for path in files_with_suffix(folder, ".sph"):
        stem = path.stem.lower()
        if stem in index:
            problems.append(Problem("duplicate_audio", str(path), f"same name as {index[stem]}"))
        else:
            index[stem] = path
    return index, problems


def read_conv_tab(path: Path) -> tuple[dict[str, tuple[str, str]], list[Problem]]:
    """``conv_tab.csv`` -> {"sw02001": (caller on side A, caller on side B)}.

    Rows look like ``2001,Y,1020,1044,303,...``; rows not starting with a number (a header)
    are skipped, short ones are problems.
    """
    callers: dict[str, tuple[str, str]] = {}
    problems = []
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            fields = [value.strip().strip('"').strip() for value in row]
            if not fields or not fields[0].isdigit():
                continue
            if len(fields) < 4 or not fields[2] or not fields[3]:
                problems.append(
                    Problem("malformed_conv_tab", f"{path}:{number}", "expected conv,?,A,B,...")
                )
                continue
            callers[conversation_name(fields[0])] = (fields[2], fields[3])
    return callers, problems


def conversation_name(number: str) -> str:
    """ms98 number ("2001") -> audio stem ("sw02001")."""
    return f"sw{int(number):05d}"


def read_ms98(path: Path) -> tuple[list[Segment], list[Problem]]:
    """Segments of one ``swNNNN{A,B}-ms98-a-trans.text`` file; bad lines are problems.

    A line is ``sw2001A-ms98-a-0002 0.977625 11.561375 words...``; its id must belong to the
    file's conversation side and its times must satisfy 0 <= begin < end.
    """
    name = MS98_FILE.fullmatch(path.name)
    if not name:
        return [], [
            Problem("malformed_transcript_name", str(path), "expected swNNNN{A,B}" + MS98_SUFFIX)
        ]
    conversation, side = conversation_name(name.group(1)), name.group(2)
    segments, problems = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        return [], [Problem("unreadable_transcript", str(path), str(error))]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split(maxsplit=3)
        detail = _ms98_line_error(fields, conversation, side)
        if detail:
            problems.append(Problem("malformed_line", where, f"{detail}: {line.strip()!r}"))
            continue
        segments.append(
            Segment(
                fields[0],
                conversation,
                side,
                f"{conversation}{side}",
                float(fields[1]),
                float(fields[2]),
                fields[3],
                where,
            )
        )
    return segments, problems


def _ms98_line_error(fields: list[str], conversation: str, side: str) -> str | None:
    if len(fields) < 4:
        return "expected 'ID BEGIN END WORDS...'"
    match = MS98_ID.fullmatch(fields[0])
    if not match or conversation_name(match.group(1)) != conversation or match.group(2) != side:
        return f"id {fields[0]!r} does not belong to {conversation}{side}"
    try:
        begin, end = float(fields[1]), float(fields[2])
    except ValueError:
        return "times are not numbers"
    if not 0 <= begin < end:
        return f"times {begin} .. {end} are not 0 <= begin < end"
    return None


def inspect_sphere(path: Path) -> AudioFacts | Problem:
    """Header facts of a SPHERE file, or the problem that makes it unusable."""
    try:
        header = read_sphere_header(path)
        if is_shorten(header):
            check_decodable(str(path))  # raises with the per-file remedy
        facts = AudioFacts(
            int(header.get("sample_rate", 0)),
            int(header.get("channel_count", 1)),
            int(header.get("sample_count", -1)),
        )
    except SphereError as error:
        kind = "shorten_compressed" if "shorten" in str(error) else "unreadable_audio"
        return Problem(kind, str(path), str(error).removeprefix(f"{path}: "))
    except (OSError, ValueError) as error:
        return Problem("unreadable_audio", str(path), str(error))
    if facts.sample_rate != SAMPLE_RATE:
        return Problem("wrong_sample_rate", str(path), f"{facts.sample_rate} Hz, expected 8000")
    if facts.channels != CHANNELS:
        return Problem("wrong_channel_count", str(path), f"{facts.channels}, expected 2")
    if facts.frames <= 0:
        return Problem("unreadable_audio", str(path), "no sample_count in the header")
    return facts


def inspect_all(paths: Iterable[Path], part: str) -> tuple[dict[Path, AudioFacts], list[Problem]]:
    """Inspect each file once; raise ONE SphereError if every file is shorten-compressed."""
    paths = sorted(set(paths))
    facts, problems = {}, []
    for path in paths:
        result = inspect_sphere(path)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            facts[path] = result
    shortened = [p for p in problems if p.kind == "shorten_compressed"]
    if shortened and len(shortened) == len(paths):
        raise SphereError(
            f"all {len(paths)} {part} SPHERE files are shorten-compressed (first: "
            f"{shortened[0].file}). {REMEDY}"
        )
    return facts, problems
