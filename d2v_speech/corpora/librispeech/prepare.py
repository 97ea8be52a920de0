"""Preparation of LibriSpeech and the Libri-light fine-tuning sets as SpeechBrain CSVs.

Works unchanged on the real corpora and on the embedded one (``d2v_speech.synthetic.librispeech``).
The command line is :mod:`d2v_speech.corpora.librispeech.command_line`.

Outputs in ``save_folder``:

- ``<split>.csv`` per LibriSpeech split, ``train_10m.csv``, ``train_1h.csv``, ``train_10h.csv``,
  all with columns ``ID,duration,wav,spk_id,wrd``. Example line::

      103-1240-0000,14.085,$data_root/train-clean-100/103/1240/103-1240-0000.flac,103,CHAPTER ONE

  ``duration`` is in seconds, ``spk_id`` the LibriSpeech speaker, ``wrd`` the upper-case words.
- Paths use two placeholders: LibriSpeech CSVs are relative to the LibriSpeech folder
  (``$data_root``), Libri-light CSVs to the ``librispeech_finetuning`` folder (``$ll_root``),
  because the two are separate downloads that users unpack in different places. Load them with
  ``DynamicItemDataset.from_csv(csv, replacements={"data_root": ls, "ll_root": ll})``
  (SpeechBrain ignores unused replacement keys).
- ``prepare_options.json``: per CSV, the options that produced it and a fingerprint of its
  source files (paths, sizes, modification times). A CSV is redone when it is missing, its
  options changed, a source file was added, deleted or rewritten, or ``force=True``; the log
  says which, or that it is up to date.
- ``prepare_summary.json``: per CSV, counts, hours, every problem (kind, file, detail; the file
  is left out) and every warning (silent, constant or clipped audio; the file is kept).

Every audio file is decoded by default (``verify_audio``; in parallel threads, about 6,000x
real time per core for FLAC, so LibriSpeech's 960 h take minutes): a truncated or damaged body,
NaN samples, a wrong sample rate (not 16 kHz), stereo, empty files and clips shorter than the
CNN's receptive field (400 samples) are problems. ``verify_audio=False`` reads headers only.
"""

import os
import time
from pathlib import Path

from speechbrain.utils.logger import get_logger

from d2v_speech.atomic_files import read_json
from d2v_speech.corpora.corpus_scan import (
    CSV_COLUMNS,
    Problem,
    ScanResult,
    files_fingerprint,
    merge_scans,
    scan_folder,
)
from d2v_speech.corpora.prep_state import OPTIONS_NAME, SUMMARY_NAME, store_summaries, write_csv

logger = get_logger(__name__)

PREPARATION_VERSION = "2"  # 2: source-file fingerprint, decoding by default, quality warnings
LIBRISPEECH_SPLITS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
DEFAULT_SPLITS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
LIBRILIGHT_10M_SUBSETS = 6


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def _check_durations(min_duration: float | None, max_duration: float | None) -> None:
    for name, value in (("min_duration", min_duration), ("max_duration", max_duration)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0 seconds, got {value}")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ValueError(f"min_duration {min_duration} > max_duration {max_duration}")


def _counts(items: list[Problem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return counts


def _split_summary(csv_path: Path, scan: ScanResult, options: dict) -> dict:
    return {
        "csv": str(csv_path),
        "utterances": len(scan.rows),
        "hours": round(sum(row["duration"] for row in scan.rows) / 3600.0, 4),
        "filtered_by_duration": scan.filtered_by_duration,
        "problem_counts": _counts(scan.problems),
        "problems": [problem.as_dict() for problem in scan.problems],
        "warning_counts": _counts(scan.warnings),
        "warnings": [warning.as_dict() for warning in scan.warnings],
        "options": options,
    }


def _warn(csv_name: str, scan: ScanResult) -> None:
    for problem in scan.problems:
        logger.warning(
            "%s: skipped %s [%s]: %s", csv_name, problem.file, problem.kind, problem.detail
        )
    for warning in scan.warnings:
        logger.warning("%s: kept %s, but it is %s audio", csv_name, warning.file, warning.kind)


def stale_reason(save_folder: Path, csv_name: str, options: dict, force: bool) -> str | None:
    """Why ``csv_name`` must be prepared again, or None when it is up to date."""
    if force:
        return "asked to (force)"
    if not (save_folder / csv_name).exists():
        return "not prepared yet"
    stored = read_json(save_folder / OPTIONS_NAME).get(csv_name)
    if stored == options:
        return None
    if stored is None:
        return "no record of how it was prepared"
    before, now = stored.get("source_files") or {}, options["source_files"]
    if {k: v for k, v in stored.items() if k != "source_files"} == {
        k: v for k, v in options.items() if k != "source_files"
    }:
        return (
            f"its source files changed ({before.get('files', '?')} -> {now['files']} files, "
            "or some were rewritten)"
        )
    return "its options changed"


def _is_fresh(save_folder: Path, csv_name: str, options: dict, force: bool) -> bool:
    """Log whether ``csv_name`` is up to date or what makes it stale; True when up to date."""
    reason = stale_reason(save_folder, csv_name, options, force)
    if reason is None:
        logger.info("%s is up to date; skipped.", save_folder / csv_name)
        return True
    logger.info("preparing %s: %s.", save_folder / csv_name, reason)
    return False


def _finish(save_folder: Path, outputs: dict[str, tuple[ScanResult, dict]]) -> dict[str, dict]:
    """Write CSVs, then their summaries, then their options (last, so a crash means redo)."""
    summaries = {}
    for csv_name, (scan, options) in outputs.items():
        csv_path = save_folder / csv_name
        write_csv(scan.rows, csv_path, CSV_COLUMNS)
        _warn(csv_name, scan)
        summaries[csv_name] = _split_summary(csv_path, scan, options)
    store_summaries(
        save_folder,
        summaries,
        {name: options for name, (_, options) in outputs.items()},
        {name: len(scan.problems) for name, (scan, _) in outputs.items()},
        logger,
    )
    return summaries


def _result(save_folder: Path, csv_names: list[str], prepared: dict, missing: list[str]) -> dict:
    stored = read_json(save_folder / SUMMARY_NAME)
    csvs = {name: prepared.get(name, stored.get(name, {})) for name in csv_names}
    return {
        "save_folder": str(save_folder),
        "csvs": csvs,
        "prepared": sorted(prepared),
        "up_to_date": sorted(set(csv_names) - set(prepared)),
        "missing_splits": missing,
        "problems": sum(len(summary.get("problems", [])) for summary in csvs.values()),
    }


def _scan_split(
    split_folder: Path, data_folder: Path, options: dict, workers: int, progress: bool
) -> ScanResult:
    """`scan_folder` of one split with the options its up-to-date check records."""
    return scan_folder(
        split_folder,
        data_folder,
        options["placeholder"],
        options["require_transcripts"],
        options["min_duration"],
        options["max_duration"],
        options["verify_audio"],
        workers,
        progress,
    )


def prepare_librispeech(
    data_folder: str | Path,
    save_folder: str | Path,
    splits: tuple[str, ...] | list[str] = DEFAULT_SPLITS,
    min_duration: float | None = None,
    max_duration: float | None = None,
    skip_prep: bool = False,
    force: bool = False,
    require_transcripts: bool = True,
    optional_splits: tuple[str, ...] | list[str] = (),
    verify_audio: bool = True,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write ``<split>.csv`` for each LibriSpeech split folder under ``data_folder``.

    Arguments
    ---------
    splits: split folder names (any folder in the LibriSpeech layout works).
    min_duration, max_duration: utterances outside these limits (seconds) are left out and
        counted as ``filtered_by_duration`` (not as problems).
    require_transcripts: if False (unlabelled pretraining data, e.g. Libri-light ``small``),
        audio without a transcript is kept with an empty ``wrd``.
    optional_splits: splits whose folder may be missing (logged and listed in
        ``missing_splits``); any other missing split raises FileNotFoundError.
    verify_audio: decode every file (default), not only its header.

    Returns a summary: per CSV its counts, hours and problems; which CSVs were prepared and
    which were already up to date. The same summaries are stored in ``prepare_summary.json``.
    """
    if skip_prep:
        return {"save_folder": str(save_folder), "skipped_prep": True}
    if not splits:
        raise ValueError("splits is empty; name at least one LibriSpeech split folder")
    _check_durations(min_duration, max_duration)
    data_folder = Path(data_folder)
    if not data_folder.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder {data_folder} does not exist")
    save_folder = Path(save_folder)
    save_folder.mkdir(parents=True, exist_ok=True)
    workers = num_workers or _default_workers()
    started = time.perf_counter()

    missing, csv_names, outputs = [], [], {}
    for split in splits:
        split_folder = data_folder / split
        if not split_folder.is_dir():
            if split in optional_splits:
                logger.warning("Optional split folder %s is missing; skipped.", split_folder)
                missing.append(split)
                continue
            raise FileNotFoundError(f"split folder {split_folder} does not exist")
        csv_name = f"{split}.csv"
        csv_names.append(csv_name)
        options = {
            "version": PREPARATION_VERSION,
            "folder": str(split_folder.resolve()),
            "placeholder": "data_root",
            "require_transcripts": require_transcripts,
            "min_duration": min_duration,
            "max_duration": max_duration,
            "verify_audio": verify_audio,
            "source_files": files_fingerprint([split_folder]),
        }
        if not _is_fresh(save_folder, csv_name, options, force):
            outputs[csv_name] = (
                _scan_split(split_folder, data_folder, options, workers, progress),
                options,
            )
    prepared = _finish(save_folder, outputs)
    logger.info("LibriSpeech preparation took %.1f s.", time.perf_counter() - started)
    return _result(save_folder, csv_names, prepared, missing)


def librilight_sources(subset_10m: int) -> dict[str, tuple[str, ...]]:
    """Folders (relative to ``librispeech_finetuning``) that make up each fine-tuning set."""
    one_hour = tuple(f"1h/{k}" for k in range(LIBRILIGHT_10M_SUBSETS))
    return {
        "train_10m.csv": (f"1h/{subset_10m}",),
        "train_1h.csv": one_hour,
        "train_10h.csv": (*one_hour, "9h"),
    }


def prepare_librilight_finetuning(
    ll_folder: str | Path,
    save_folder: str | Path,
    subset_10m: int = 0,
    min_duration: float | None = None,
    max_duration: float | None = None,
    skip_prep: bool = False,
    force: bool = False,
    verify_audio: bool = True,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write ``train_10m.csv``, ``train_1h.csv``, ``train_10h.csv`` from ``librispeech_finetuning``.

    ``ll_folder`` holds ``1h/{0..5}/{clean,other}/...`` (six disjoint 10-minute subsets) and
    ``9h/{clean,other}/...``. 10 min = ``1h/<subset_10m>``; 1 h = all six; 10 h = 1 h + 9h.
    Paths use the ``$ll_root`` placeholder (relative to ``ll_folder``). The chosen 10-minute
    subset is recorded in the options and the summary of ``train_10m.csv``.
    """
    if skip_prep:
        return {"save_folder": str(save_folder), "skipped_prep": True}
    if not (isinstance(subset_10m, int) and 0 <= subset_10m < LIBRILIGHT_10M_SUBSETS):
        raise ValueError(f"subset_10m must be an integer in 0..5, got {subset_10m!r}")
    _check_durations(min_duration, max_duration)
    ll_folder = Path(ll_folder)
    if not ll_folder.is_dir():
        raise FileNotFoundError(f"Libri-light fine-tuning folder {ll_folder} does not exist")
    save_folder = Path(save_folder)
    save_folder.mkdir(parents=True, exist_ok=True)
    workers = num_workers or _default_workers()

    sources = librilight_sources(subset_10m)
    scans: dict[str, ScanResult] = {}
    outputs = {}
    for csv_name, folders in sources.items():
        options = {
            "version": PREPARATION_VERSION,
            "folder": str(ll_folder.resolve()),
            "placeholder": "ll_root",
            "subsets": list(folders),
            "min_duration": min_duration,
            "max_duration": max_duration,
            "verify_audio": verify_audio,
            "source_files": files_fingerprint(ll_folder / folder for folder in folders),
        }
        if csv_name == "train_10m.csv":
            options["subset_10m"] = subset_10m
        if _is_fresh(save_folder, csv_name, options, force):
            continue
        for folder in folders:
            if folder not in scans:
                path = ll_folder / folder
                if not path.is_dir():
                    raise FileNotFoundError(f"Libri-light subset folder {path} does not exist")
                scans[folder] = scan_folder(
                    path,
                    ll_folder,
                    "ll_root",
                    True,
                    min_duration,
                    max_duration,
                    verify_audio,
                    workers,
                    progress,
                )
        outputs[csv_name] = (merge_scans(scans[folder] for folder in folders), options)
    prepared = _finish(save_folder, outputs)
    return _result(save_folder, list(sources), prepared, [])
