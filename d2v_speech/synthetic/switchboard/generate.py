"""Generate the corpus: check the arguments, plan, render into staging, write text, publish."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from speechbrain.utils.logger import get_logger

from d2v_speech.atomic_files import json_text, read_json, write_text_atomic
from d2v_speech.synthetic.fortune_sentences import FORTUNE_DIR, load_sentences
from d2v_speech.synthetic.staging import exclusive, is_stamped, open_staging, publish
from d2v_speech.synthetic.switchboard.corpus_layout import (
    LOCK_NAME,
    MANIFEST_NAME,
    OWNED_ENTRIES,
    STAGING_NAME,
    STAMP_NAME,
)
from d2v_speech.synthetic.switchboard.ldc_files import write_eval_text, write_training_text
from d2v_speech.synthetic.switchboard.manifest import run_settings, summarize
from d2v_speech.synthetic.switchboard.planning import (
    SENTENCE_WORDS,
    ConversationSpec,
    plan_corpus,
)
from d2v_speech.synthetic.switchboard.render import render_all
from d2v_speech.synthetic.tts import check_tools

logger = get_logger(__name__)


def is_complete(out_dir: Path, settings: dict) -> bool:
    """True if ``out_dir`` holds a finished corpus generated with exactly ``settings``."""
    return is_stamped(out_dir, settings, STAMP_NAME, OWNED_ENTRIES)


def _check_seconds(name: str, bounds) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in bounds)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be (min, max) seconds, got {bounds!r}") from error
    if not 5.0 <= low <= high <= 600.0:
        raise ValueError(f"{name} must satisfy 5 <= min <= max <= 600 seconds, got {bounds!r}")
    return low, high


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def generate_mini_switchboard(
    out_dir: str | Path,
    conversations: int = 24,
    eval_conversations: int = 3,
    seed: int = 0,
    jobs: int = 2,
    force: bool = False,
    train_seconds: tuple[float, float] = (60.0, 90.0),
    eval_seconds: tuple[float, float] = (50.0, 70.0),
    fortune_dir: str | Path = FORTUNE_DIR,
    progress: bool = True,
) -> dict:
    """Generate the mini Switchboard under ``out_dir``; return its manifest (package docstring).

    ``conversations`` training conversations of ``train_seconds`` (min, max) each, and
    ``eval_conversations`` Hub5'00 conversations per part (Switchboard and CallHome) of
    ``eval_seconds``. A complete corpus with the same settings is left untouched unless
    ``force``.
    """
    _check_count("conversations", conversations)
    _check_count("eval_conversations", eval_conversations)
    _check_count("jobs", jobs)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    train_seconds = _check_seconds("train_seconds", train_seconds)
    eval_seconds = _check_seconds("eval_seconds", eval_seconds)
    out_dir = Path(out_dir)
    sentences = load_sentences(Path(fortune_dir), *SENTENCE_WORDS)
    specs, caller_of = plan_corpus(
        sentences, conversations, eval_conversations, train_seconds, eval_seconds, seed
    )
    arguments = {
        "conversations": conversations,
        "eval_conversations": eval_conversations,
        "seed": seed,
        "train_seconds": list(train_seconds),
        "eval_seconds": list(eval_seconds),
    }
    settings = run_settings(specs, caller_of, arguments, check_tools(), sentences)
    if not force and is_complete(out_dir, settings):
        logger.info(
            "Mini Switchboard in %s is complete with these settings; nothing to do.", out_dir
        )
        return read_json(out_dir / MANIFEST_NAME)
    with exclusive(out_dir, LOCK_NAME):
        # Another process may have finished the same corpus while this one waited.
        if not force and is_complete(out_dir, settings):
            return read_json(out_dir / MANIFEST_NAME)
        return _generate(out_dir, specs, caller_of, settings, seed, jobs, force, progress)


def _generate(
    out_dir: Path,
    specs: list[ConversationSpec],
    caller_of: dict[int, int],
    settings: dict,
    seed: int,
    jobs: int,
    force: bool,
    progress: bool,
) -> dict:
    """Render, write the text files and manifest into staging, then publish (lock held)."""
    started = time.perf_counter()
    staging = out_dir / STAGING_NAME
    open_staging(staging, settings, force)
    results = render_all(specs, staging, seed, jobs, progress)
    write_training_text(specs, results, caller_of, staging, seed)
    write_eval_text(results, staging)
    summary = summarize(specs, results, caller_of, settings)
    write_text_atomic(staging / MANIFEST_NAME, json_text(summary))
    publish(staging, out_dir, settings, STAMP_NAME, OWNED_ENTRIES)
    logger.info(
        "Generated %.3f h (%d conversations) in %s in %.1f s.",
        summary["total_hours"],
        len(specs),
        out_dir,
        time.perf_counter() - started,
    )
    return summary


def _format_summary(summary: dict) -> str:
    lines = [f"{'part':<10} {'convs':>6} {'segments':>9} {'words':>7} {'hours':>8}"]
    for part, stats in summary["parts"].items():
        lines.append(
            f"{part:<10} {stats['conversations']:>6} {stats['segments']:>9} "
            f"{stats['words']:>7} {stats['hours']:>8.3f}"
        )
    lines.append(f"total: {summary['total_hours']:.3f} h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point (see the package docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m d2v_speech.synthetic.switchboard",
        description="Generate a small synthetic Switchboard-1 + Hub5'00 in the LDC layout.",
    )
    parser.add_argument("--out_dir", default="data/MiniSwitchboard", help="output folder")
    parser.add_argument("--conversations", type=int, default=24, help="training conversations")
    parser.add_argument(
        "--eval_conversations", type=int, default=3, help="Hub5'00 conversations per part"
    )
    parser.add_argument("--train_seconds", type=float, nargs=2, default=(60.0, 90.0))
    parser.add_argument("--eval_seconds", type=float, nargs=2, default=(50.0, 70.0))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = generate_mini_switchboard(
        args.out_dir,
        args.conversations,
        args.eval_conversations,
        args.seed,
        args.jobs,
        args.force,
        tuple(args.train_seconds),
        tuple(args.eval_seconds),
    )
    print(_format_summary(summary))
    return summary
