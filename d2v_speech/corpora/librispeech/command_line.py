"""Command line: prepare every LibriSpeech split present, and the Libri-light fine-tuning sets.

Usage (``__main__.py`` runs :func:`main`)::

    python -m d2v_speech.corpora.librispeech --data_folder data/MiniLibriSpeech \\
        --save_folder results/prepared [--force] [--subset_10m 0] [--no_verify_audio]

The Libri-light sets are prepared when ``--ll_folder`` (default
``<data_folder>/librispeech_finetuning``) exists. See :mod:`d2v_speech.corpora.librispeech.prepare`.
"""

import argparse
import logging
import sys
from pathlib import Path

from d2v_speech.corpora.librispeech.prepare import (
    LIBRISPEECH_SPLITS,
    prepare_librilight_finetuning,
    prepare_librispeech,
)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind}={count}" for kind, count in sorted(counts.items())) or "none"


def _print_summary(result: dict) -> None:
    for name, summary in result["csvs"].items():
        state = "prepared" if name in result["prepared"] else "up to date"
        print(
            f"{name:<24} {summary.get('utterances', 0):>7} utts {summary.get('hours', 0.0):>9.3f} h"
            f"  {state:<10}  problems: {_counts_text(summary.get('problem_counts', {}))}"
            f"  warnings: {_counts_text(summary.get('warning_counts', {}))}"
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m d2v_speech.corpora.librispeech",
        description="SpeechBrain CSVs for LibriSpeech splits and Libri-light fine-tuning sets.",
    )
    parser.add_argument("--data_folder", required=True, help="LibriSpeech root folder")
    parser.add_argument("--save_folder", required=True, help="where the CSVs go")
    parser.add_argument("--ll_folder", default=None, help="librispeech_finetuning folder")
    parser.add_argument("--splits", nargs="+", default=None, help="default: all present")
    parser.add_argument("--subset_10m", type=int, default=0, help="which 1h/k is train_10m")
    parser.add_argument("--min_duration", type=float, default=None)
    parser.add_argument("--max_duration", type=float, default=None)
    parser.add_argument(
        "--no_verify_audio", action="store_true",
        help="read headers only (default: decode every file, about 6,000x real time per core)",
    )  # fmt: skip
    parser.add_argument("--verify_audio", action="store_true", help=argparse.SUPPRESS)  # default
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="redo even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    data_folder = Path(args.data_folder)
    if not data_folder.is_dir():
        parser.error(f"--data_folder {data_folder} does not exist")
    splits = args.splits or [s for s in LIBRISPEECH_SPLITS if (data_folder / s).is_dir()]
    ll_folder = Path(args.ll_folder) if args.ll_folder else data_folder / "librispeech_finetuning"
    if not splits and not ll_folder.is_dir():
        parser.error(f"no LibriSpeech split folder and no {ll_folder} found")
    common = {
        "min_duration": args.min_duration,
        "max_duration": args.max_duration,
        "force": args.force,
        "verify_audio": not args.no_verify_audio,
        "num_workers": args.num_workers,
    }
    problems = 0
    if splits:
        result = prepare_librispeech(data_folder, args.save_folder, splits=splits, **common)
        _print_summary(result)
        problems += result["problems"]
    if ll_folder.is_dir():
        result = prepare_librilight_finetuning(
            ll_folder, args.save_folder, subset_10m=args.subset_10m, **common
        )
        _print_summary(result)
        problems += result["problems"]
    print(f"{problems} problem(s); details in {Path(args.save_folder) / 'prepare_summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
