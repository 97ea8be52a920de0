"""Switchboard output files: the CSVs, ``prepare_summary.json`` and ``prepare_options.json``.

A CSV is redone only when it is missing, its options changed, or ``force`` is set
(:func:`is_fresh`). :func:`write_outputs` writes CSVs first, then summaries, then options, so a
crash in between means the next run redoes the work instead of trusting a half result.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from speechbrain.utils.logger import get_logger

from d2v_speech.atomic_files import read_json
from d2v_speech.corpora.corpus_scan import Problem
from d2v_speech.corpora.prep_state import OPTIONS_NAME, store_summaries, write_csv
from d2v_speech.corpora.switchboard.rows import CSV_COLUMNS, Rows

logger = get_logger(__name__)


def is_fresh(save_folder: Path, names: Iterable[str], options: dict, force: bool) -> bool:
    """True when every named CSV exists and was made with exactly these options."""
    stored = read_json(save_folder / OPTIONS_NAME)
    return not force and all(
        (save_folder / name).exists() and stored.get(name) == options for name in names
    )


def _log_problems(csv_name: str, problems: list[Problem]) -> None:
    """One warning per problem kind (count and first example), not one per file."""
    by_kind: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        by_kind[problem.kind].append(problem)
    for kind, items in sorted(by_kind.items()):
        logger.warning(
            "%s: %d x %s, e.g. %s: %s", csv_name, len(items), kind, items[0].file, items[0].detail
        )


def _summary(save_folder: Path, csv_name: str, rows: Rows, options: dict, extra: dict) -> dict:
    counts = Counter(problem.kind for problem in rows.problems)
    return {
        "csv": str(save_folder / csv_name),
        "utterances": len(rows.rows),
        "hours": round(sum(row["duration"] for row in rows.rows) / 3600.0, 4),
        "problem_counts": dict(sorted(counts.items())),
        "problems": [problem.as_dict() for problem in rows.problems],
        **dict(sorted(rows.counts.items())),
        **extra,
        "options": options,
    }


def write_outputs(
    save_folder: Path, outputs: dict[str, tuple[Rows, dict, dict]]
) -> dict[str, dict]:
    """Write each CSV (name -> rows, options, summary extras); returns the new summaries."""
    summaries = {}
    for csv_name, (rows, options, extra) in outputs.items():
        write_csv(rows.rows, save_folder / csv_name, CSV_COLUMNS)
        _log_problems(csv_name, rows.problems)
        summaries[csv_name] = _summary(save_folder, csv_name, rows, options, extra)
    store_summaries(
        save_folder,
        summaries,
        {name: options for name, (_, options, _) in outputs.items()},
        {name: len(rows.problems) for name, (rows, _, _) in outputs.items()},
        logger,
    )
    return summaries
