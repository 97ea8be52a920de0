"""Word and character error rates (jiwer) and the result files people and programs read.

Files written by `write_results` in the output folder:

- `hyp_<set>.tsv`: one row per utterance: ID, word errors, reference words, REF, HYP;
- `results.json`: per test set WER, CER (in %), error counts and sizes, plus run information;
- `results.md`: the same as a markdown table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jiwer

__all__ = ["ErrorRates", "score", "write_hypotheses", "write_results"]


@dataclass
class ErrorRates:
    """Corpus-level error rates (percent) and the counts behind them."""

    utterances: int
    words: int
    characters: int
    wer: float
    cer: float
    word_substitutions: int
    word_deletions: int
    word_insertions: int
    char_errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(
    references: Sequence[str], hypotheses: Sequence[str], allow_empty_references: bool = False
) -> ErrorRates:
    """WER and CER over the whole set (errors summed over utterances / reference size).

    Characters include the spaces between words, as jiwer counts them. An empty reference is
    an error unless `allow_empty_references` (NIST scoring of segments whose words are all
    optional, e.g. only hesitations): then every hypothesis word there is an insertion.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("cannot score an empty test set (no utterances)")
    empty = [index for index, ref in enumerate(references) if not ref.strip()]
    if len(empty) == len(references):
        raise ValueError("every reference is empty; WER is undefined")
    if empty and not allow_empty_references:
        raise ValueError(f"references {empty[:10]} are empty; WER is undefined for them")
    words = jiwer.process_words(list(references), list(hypotheses))
    chars = jiwer.process_characters(list(references), list(hypotheses))
    num_words = words.hits + words.substitutions + words.deletions
    num_chars = chars.hits + chars.substitutions + chars.deletions
    char_errors = chars.substitutions + chars.deletions + chars.insertions
    return ErrorRates(
        utterances=len(references),
        words=num_words,
        characters=num_chars,
        wer=100.0 * words.wer,
        cer=100.0 * chars.cer,
        word_substitutions=words.substitutions,
        word_deletions=words.deletions,
        word_insertions=words.insertions,
        char_errors=char_errors,
    )


def write_hypotheses(
    path: str | Path, ids: Sequence[str], references: Sequence[str], hypotheses: Sequence[str]
) -> Path:
    """Tab-separated per-utterance file: ID, errors, ref_words, REF, HYP (header line first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["ID", "errors", "ref_words", "REF", "HYP"])
        for utt_id, ref, hyp in zip(ids, references, hypotheses, strict=True):
            result = jiwer.process_words(ref, hyp)
            errors = result.substitutions + result.deletions + result.insertions
            writer.writerow([utt_id, errors, len(ref.split()), ref, hyp])
    return path


def write_results(
    output_folder: str | Path,
    results: Mapping[str, ErrorRates],
    info: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `results.json` and `results.md`; returns their paths."""
    folder = Path(output_folder)
    folder.mkdir(parents=True, exist_ok=True)
    content = {"info": dict(info or {}), "sets": {k: v.as_dict() for k, v in results.items()}}
    json_path = folder / "results.json"
    json_path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lines = ["# Results", ""]
    for key, value in sorted((info or {}).items()):
        lines.append(f"- {key}: {value}")
    lines += [
        "",
        "| set | utterances | words | WER % | CER % | sub | del | ins |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rates in results.items():
        lines.append(
            f"| {name} | {rates.utterances} | {rates.words} | {rates.wer:.2f} | {rates.cer:.2f} "
            f"| {rates.word_substitutions} | {rates.word_deletions} | {rates.word_insertions} |"
        )
    md_path = folder / "results.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path
