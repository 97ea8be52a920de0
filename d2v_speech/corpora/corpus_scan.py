"""Scan one folder in the LibriSpeech layout into SpeechBrain CSV rows, collecting every problem.

A folder holds ``<speaker>/<chapter>/<utt-id>.flac`` audio and ``<speaker>-<chapter>.trans.txt``
transcripts (lines ``<utt-id> <TRANSCRIPT>``). Every bad file becomes a :class:`Problem` naming
the file; it is skipped, never silently and never by aborting the whole scan.
"""

import hashlib
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from d2v_speech.corpora.audio_checks import AudioFacts, AudioProblem, inspect_audio

CSV_COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd")
TRANSCRIPT_SUFFIX = ".trans.txt"
AUDIO_SUFFIXES = (".flac", ".wav")
LIBRISPEECH_ID = re.compile(r"^\d+-\d+-\d+$")
VALID_TRANSCRIPT = re.compile(r"^[A-Z']+(?: [A-Z']+)*$")


@dataclass(frozen=True)
class Problem:
    """One skipped item: ``kind`` (category), ``file`` (path) and a human ``detail``."""

    kind: str
    file: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class ScanResult:
    """Rows (dicts with :data:`CSV_COLUMNS`), problems (skipped files), warnings (kept files
    whose decoded audio is silent, constant or clipped), and rows dropped by duration limits."""

    rows: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    filtered_by_duration: int = 0
    warnings: list[Problem] = field(default_factory=list)


def read_transcripts(path: Path) -> tuple[dict[str, str], list[Problem]]:
    """Transcripts of one ``.trans.txt`` file, keyed by utterance id, plus its bad lines.

    Blank lines are ignored. A line with an id but no words, with non-ASCII characters or with
    characters outside A-Z, apostrophe and space (after upper-casing) is a problem.
    """
    entries: dict[str, str] = {}
    problems: list[Problem] = []
    try:
        content = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return {}, [Problem("unreadable_transcript", str(path), str(error))]
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        utterance_id = parts[0]
        text = " ".join(parts[1].split()).upper() if len(parts) > 1 else ""
        where = f"line {number} ({utterance_id})"
        if not text:
            problems.append(Problem("empty_transcript", str(path), f"{where}: no words"))
        elif not text.isascii():
            problems.append(Problem("invalid_transcript", str(path), f"{where}: non-ASCII text"))
        elif not VALID_TRANSCRIPT.match(text):
            problems.append(
                Problem(
                    "invalid_transcript",
                    str(path),
                    f"{where}: characters other than A-Z, apostrophe and space",
                )
            )
        elif utterance_id in entries:
            problems.append(Problem("duplicate_id", str(path), f"{where}: id repeated"))
        else:
            entries[utterance_id] = text
            continue
        # A bad line still claims its id, so its audio is not reported a second time.
        entries.setdefault(utterance_id, "")
    return entries, problems


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(audio files, transcript files) under ``folder``, in sorted order."""
    audio, transcripts = [], []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs.sort()
        for name in sorted(files):
            if name.endswith(TRANSCRIPT_SUFFIX):
                transcripts.append(Path(directory) / name)
            elif name.lower().endswith(AUDIO_SUFFIXES):
                audio.append(Path(directory) / name)
    return audio, transcripts


def files_fingerprint(folders: Iterable[Path]) -> dict:
    """``{"files": count, "digest": sha256}`` of the audio and transcript files under
    ``folders``: their paths, sizes and modification times (a stat per file, no reading), so
    a preparation notices a file added, deleted, replaced or rewritten since it last ran."""
    digest = hashlib.sha256()
    count = 0
    for folder in folders:
        audio, transcripts = _walk(folder)
        for path in sorted(audio + transcripts):
            status = path.stat()
            digest.update(f"{path}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
            count += 1
    return {"files": count, "digest": digest.hexdigest()}


def utterance_identity(audio: Path, folder: Path) -> tuple[str, str]:
    """(ID, speaker) of an audio file.

    LibriSpeech names (``<spk>-<chapter>-<n>``) give ID = file stem and speaker = its first field.
    Other names (e.g. Libri-light unlabelled books) give ID = relative path without suffix,
    ``/`` replaced by ``-``, and speaker = the first folder under ``folder``.
    """
    stem = audio.name[: -len(audio.suffix)]
    if LIBRISPEECH_ID.match(stem):
        return stem, stem.split("-")[0]
    relative = audio.relative_to(folder).with_suffix("")
    speaker = relative.parts[0] if len(relative.parts) > 1 else ""
    return "-".join(relative.parts), speaker


def _check(path: Path, decode: bool) -> AudioFacts | AudioProblem:
    try:
        return inspect_audio(path, decode=decode)
    except AudioProblem as problem:
        return problem


def check_audio_files(
    paths: list[Path], decode: bool, num_workers: int, description: str, progress: bool
) -> list[AudioFacts | AudioProblem]:
    """:func:`inspect_audio` on every path with a thread pool (libsndfile releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        results = pool.map(lambda path: _check(path, decode), paths)
        return list(
            tqdm(results, total=len(paths), desc=description, unit="file", disable=not progress)
        )


def _collect_transcripts(
    transcript_files: Iterable[Path], result: ScanResult
) -> dict[str, tuple[str, Path]]:
    """utterance ID -> (text, transcript file); duplicates and bad lines go to ``result``."""
    transcripts: dict[str, tuple[str, Path]] = {}
    for transcript_file in transcript_files:
        entries, problems = read_transcripts(transcript_file)
        result.problems.extend(problems)
        for utterance_id, text in entries.items():
            if utterance_id in transcripts:
                where = f"{utterance_id} also in {transcripts[utterance_id][1]}"
                result.problems.append(Problem("duplicate_id", str(transcript_file), where))
                continue
            transcripts[utterance_id] = (text, transcript_file)
    return transcripts


def _pair_audio(
    audio_files: Iterable[Path],
    folder: Path,
    transcripts: dict[str, tuple[str, Path]],
    require_transcripts: bool,
    result: ScanResult,
) -> list[tuple[str, str, Path]]:
    """(utterance ID, speaker, audio) of each file to check; unpaired ones go to ``result``."""
    candidates: list[tuple[str, str, Path]] = []
    seen_ids: set[str] = set()
    for audio in audio_files:
        utterance_id, speaker = utterance_identity(audio, folder)
        if utterance_id in seen_ids:
            result.problems.append(Problem("duplicate_id", str(audio), f"{utterance_id} repeated"))
            continue
        seen_ids.add(utterance_id)
        if utterance_id not in transcripts and require_transcripts:
            result.problems.append(
                Problem("audio_without_transcript", str(audio), f"no transcript for {utterance_id}")
            )
            continue
        if require_transcripts and not transcripts[utterance_id][0]:
            continue
        candidates.append((utterance_id, speaker, audio))
    for utterance_id, (_, transcript_file) in sorted(transcripts.items()):
        if utterance_id not in seen_ids:
            result.problems.append(
                Problem(
                    "transcript_without_audio", str(transcript_file), f"no audio for {utterance_id}"
                )
            )
    return candidates


def scan_folder(
    folder: Path,
    root: Path,
    placeholder: str,
    require_transcripts: bool = True,
    min_duration: float | None = None,
    max_duration: float | None = None,
    verify_audio: bool = False,
    num_workers: int = 4,
    progress: bool = True,
) -> ScanResult:
    """CSV rows for every good utterance under ``folder``.

    ``wav`` is ``$<placeholder>/<path relative to root>``. With ``require_transcripts=False``
    audio without a transcript gets an empty ``wrd`` instead of being a problem, and transcript
    problems do not drop the audio.
    """
    audio_files, transcript_files = _walk(folder)
    result = ScanResult()
    transcripts = _collect_transcripts(transcript_files, result)
    candidates = _pair_audio(audio_files, folder, transcripts, require_transcripts, result)
    checked = check_audio_files(
        [audio for _, _, audio in candidates], verify_audio, num_workers, folder.name, progress
    )
    for (utterance_id, speaker, audio), facts in zip(candidates, checked):
        if isinstance(facts, AudioProblem):
            result.problems.append(Problem(facts.kind, str(audio), facts.detail))
            continue
        for warning in facts.warnings:
            result.warnings.append(Problem(warning, str(audio), f"{warning} audio (kept)"))
        duration = facts.duration
        if (min_duration is not None and duration < min_duration) or (
            max_duration is not None and duration > max_duration
        ):
            result.filtered_by_duration += 1
            continue
        relative = audio.relative_to(root).as_posix()
        result.rows.append(
            {
                "ID": utterance_id,
                "duration": round(duration, 6),
                "wav": f"${placeholder}/{relative}",
                "spk_id": speaker,
                "wrd": transcripts.get(utterance_id, ("", None))[0],
            }
        )
    return result


def merge_scans(scans: Iterable[ScanResult]) -> ScanResult:
    """Concatenate scans; an ID present in an earlier scan is a ``duplicate_id`` problem."""
    merged = ScanResult()
    ids: set[str] = set()
    for scan in scans:
        merged.problems.extend(scan.problems)
        merged.warnings.extend(scan.warnings)
        merged.filtered_by_duration += scan.filtered_by_duration
        for row in scan.rows:
            if row["ID"] in ids:
                merged.problems.append(
                    Problem("duplicate_id", row["wav"], f"{row['ID']} appears in two folders")
                )
                continue
            ids.add(row["ID"])
            merged.rows.append(row)
    return merged
