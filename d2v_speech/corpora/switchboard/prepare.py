"""Preparation of Switchboard-1 (LDC97S62 + ms98 transcripts) and Hub5'00 as SpeechBrain CSVs.

Expected layout under ``data_folder`` (each part may also be given on its own, or be absent:
only what exists is prepared, and what is missing is named in the result)::

    LDC97S62/swb1_d1..swb1_d4/data/sw0NNNN.sph      Switchboard audio (8 kHz, 2 channels)
    LDC97S62/docs/conv_tab.csv                      optional: conversation -> caller ids
    swb_ms98_transcriptions/NN/NNNN/swNNNN{A,B}-ms98-a-trans.text
    LDC2002S09/hub5e_00/english/{sw_*,en_*}.sph     Hub5'00 audio
    LDC2002T43/2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm (+ .glm)

Outputs in ``save_folder``: ``train.csv``, ``dev.csv``, ``test_swbd.csv`` (STM ``sw_*``),
``test_callhome.csv`` (``en_*``), ``test_eval2000.csv`` (both) with columns
``ID,duration,wav,start,stop,channel,spk_id,wrd`` (:mod:`d2v_speech.corpora.switchboard.rows`),
``wrd`` being the normalised words (:mod:`d2v_speech.corpora.switchboard.text_normalization`). Plus
``glm.csv`` (parsed GLM rules, when the GLM exists), ``prepare_options.json`` and
``prepare_summary.json`` (per CSV: counts, hours, the split and every problem by file).

This module runs the steps and holds the command line; each step has its own module:
finding and reading the parts (:mod:`~d2v_speech.corpora.switchboard.sources`), the rows of each
conversation (:mod:`~d2v_speech.corpora.switchboard.conversations`), the train/dev split by whole
conversations (:mod:`~d2v_speech.corpora.switchboard.split`), the Hub5'00 test rows
(:mod:`~d2v_speech.corpora.switchboard.hub5`) and the output files
(:mod:`~d2v_speech.corpora.switchboard.outputs`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from speechbrain.utils.logger import get_logger

from d2v_speech.atomic_files import read_json
from d2v_speech.corpora.prep_state import OPTIONS_NAME, SUMMARY_NAME
from d2v_speech.corpora.switchboard.conversations import collect_conversations
from d2v_speech.corpora.switchboard.hub5 import TEST_CSVS, prepare_eval2000
from d2v_speech.corpora.switchboard.outputs import is_fresh, write_outputs
from d2v_speech.corpora.switchboard.rows import Rows
from d2v_speech.corpora.switchboard.sources import SwitchboardParts, find_parts
from d2v_speech.corpora.switchboard.split import split_train_dev
from d2v_speech.corpora.switchboard.text_normalization import parse_glm

__all__ = ["OPTIONS_NAME", "SUMMARY_NAME", "main", "prepare_switchboard"]

logger = get_logger(__name__)

PREPARATION_VERSION = "1"
TRAIN_CSVS = ("train.csv", "dev.csv")
GLM_CSV = "glm.csv"


def _check_options(
    train_hours: float | None,
    dev_conversations: int | None,
    max_utt: int | None,
    min_duration: float | None,
    max_duration: float | None,
) -> None:
    if train_hours is not None and not train_hours > 0:
        raise ValueError(f"train_hours must be > 0 (or None for all), got {train_hours}")
    if dev_conversations is not None and (
        not isinstance(dev_conversations, int) or dev_conversations < 1
    ):
        raise ValueError(f"dev_conversations must be an integer >= 1, got {dev_conversations!r}")
    if max_utt is not None and (not isinstance(max_utt, int) or max_utt < 1):
        raise ValueError(f"max_utt must be an integer >= 1 (or None), got {max_utt!r}")
    for name, value in (("min_duration", min_duration), ("max_duration", max_duration)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0 seconds, got {value}")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ValueError(f"min_duration {min_duration} > max_duration {max_duration}")


def _prepare_train(
    parts: SwitchboardParts, save_folder: Path, options: dict, force: bool, settings: dict
) -> dict:
    if is_fresh(save_folder, TRAIN_CSVS, options, force):
        logger.info("train.csv and dev.csv are up to date; skipped.")
        return {}
    conversations, report, by_conversation = collect_conversations(
        parts, settings["keep_partial"], settings["min_duration"], settings["max_duration"]
    )
    train, dev, info = split_train_dev(
        conversations,
        settings["seed"],
        settings["dev_conversations"],
        settings["train_hours"],
        settings["max_utt"],
        settings["exclude_dev_callers"],
    )
    outputs = {"train.csv": Rows(train.rows), "dev.csv": Rows(dev.rows)}
    # problems of dev conversations go to dev; all others concern the training sources
    dev_names = set(info["dev_conversations"])
    for name, problems in sorted(by_conversation.items()):
        outputs["dev.csv" if name in dev_names else "train.csv"].problems += problems
    outputs["train.csv"].problems += report.problems
    outputs["train.csv"].counts.update(report.counts)
    extras = {}
    for csv_name, selection in (("train.csv", train), ("dev.csv", dev)):
        filtered = sum(conversations[n].filtered_by_duration for n in selection.conversations)
        extras[csv_name] = {
            "conversations": len(selection.conversations),
            "capped_by_max_utt": selection.capped,
            "filtered_by_duration": filtered,
            "split": info,
        }
    return {name: (outputs[name], options, extras[name]) for name in TRAIN_CSVS}


def _prepare_test(parts: SwitchboardParts, save_folder: Path, options: dict, force: bool) -> dict:
    glm_ready = parts.hub5_glm is None or (save_folder / GLM_CSV).exists()
    if glm_ready and is_fresh(save_folder, TEST_CSVS, options, force):
        logger.info("The Hub5'00 CSVs are up to date; skipped.")
        return {}
    outputs = prepare_eval2000(parts)
    if parts.hub5_glm:
        rules = parse_glm(parts.hub5_glm)
        rules.to_csv(save_folder / GLM_CSV)
        logger.info("%s: %d GLM rules", GLM_CSV, len(rules.mappings) + len(rules.alternations))
    extra = {"subset": "sw_* + en_*"}
    return {name: (rows, options, extra) for name, rows in outputs.items()}


def _missing_parts(parts: SwitchboardParts) -> dict[str, str]:
    missing = {}
    if not parts.swbd_audio or not parts.ms98:
        absent = [
            what
            for what, where in (
                ("LDC97S62 audio", parts.swbd_audio),
                ("ms98 transcripts", parts.ms98),
            )
            if where is None
        ]
        missing["train.csv, dev.csv"] = (
            f"{' and '.join(absent)} not found (ms98: OpenSLR SLR5 "
            "switchboard_word_alignments.tar.gz, unpacked to swb_ms98_transcriptions/)"
        )
    if not parts.hub5_audio or not parts.hub5_stm:
        absent = [
            what
            for what, where in (("LDC2002S09 audio", parts.hub5_audio), ("STM", parts.hub5_stm))
            if where is None
        ]
        missing[", ".join(TEST_CSVS)] = f"{' and '.join(absent)} not found"
    return missing


def prepare_switchboard(
    data_folder: str | Path,
    save_folder: str | Path,
    train_hours: float | None = None,
    dev_conversations: int | None = None,
    seed: int = 0,
    max_utt: int | None = 300,
    min_duration: float | None = None,
    max_duration: float | None = None,
    keep_partial: bool = False,
    exclude_dev_callers: bool = True,
    force: bool = False,
    skip_prep: bool = False,
    swbd_folder: str | Path | None = None,
    ms98_folder: str | Path | None = None,
    conv_tab: str | Path | None = None,
    hub5_audio_folder: str | Path | None = None,
    hub5_stm: str | Path | None = None,
    hub5_glm: str | Path | None = None,
) -> dict:
    """Write the Switchboard and Hub5'00 CSVs of every part that exists (module docstring).

    Arguments
    ---------
    train_hours: keep whole train conversations (stable order) until this many hours.
    dev_conversations: size of dev in conversations (default: 1 %, at least 1).
    seed: seeds the stable conversation order (dev choice and train subset).
    max_utt: at most this many train (and dev) segments per identical text (None: no cap).
    min_duration, max_duration: train/dev segments outside these limits (s) are left out.
    keep_partial: keep the spoken part of partial words instead of dropping them.
    exclude_dev_callers: leave train conversations sharing a caller with dev out.
    swbd_folder, ms98_folder, conv_tab, hub5_audio_folder, hub5_stm, hub5_glm: parts given
        separately (defaults: the LDC layout under data_folder).

    Returns per CSV its summary (also stored in prepare_summary.json), which CSVs were
    prepared or up to date, which parts are missing and the number of problems. Raises
    FileNotFoundError when no part exists, SphereError when every audio file of a part is
    shorten-compressed (one message with the remedy).
    """
    if skip_prep:
        return {"save_folder": str(save_folder), "skipped_prep": True}
    _check_options(train_hours, dev_conversations, max_utt, min_duration, max_duration)
    data_folder = Path(data_folder)
    parts, missing = _existing_parts(
        data_folder, swbd_folder, ms98_folder, conv_tab, hub5_audio_folder, hub5_stm, hub5_glm
    )
    save_folder = Path(save_folder)
    save_folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    outputs, csv_names = {}, []
    base = {"version": PREPARATION_VERSION, "data_folder": str(data_folder.resolve())}
    if parts.swbd_audio and parts.ms98:
        settings = {
            "train_hours": train_hours,
            "dev_conversations": dev_conversations,
            "seed": seed,
            "max_utt": max_utt,
            "min_duration": min_duration,
            "max_duration": max_duration,
            "keep_partial": keep_partial,
            "exclude_dev_callers": exclude_dev_callers,
        }
        sources = _sources(parts, ("swbd_audio", "ms98", "conv_tab"))
        csv_names += TRAIN_CSVS
        outputs.update(
            _prepare_train(parts, save_folder, {**base, **sources, **settings}, force, settings)
        )
    if parts.hub5_audio and parts.hub5_stm:
        sources = _sources(parts, ("hub5_audio", "hub5_stm", "hub5_glm"))
        csv_names += TEST_CSVS
        outputs.update(_prepare_test(parts, save_folder, {**base, **sources}, force))
    prepared = write_outputs(save_folder, outputs)
    logger.info("Switchboard preparation took %.1f s.", time.perf_counter() - started)
    return _result(save_folder, csv_names, prepared, missing)


def _sources(parts: SwitchboardParts, names: tuple[str, ...]) -> dict[str, str | None]:
    """Resolved paths of the named parts (None for a part that is absent), for the state file."""
    return {name: str(getattr(parts, name).resolve()) if getattr(parts, name) else None
            for name in names}  # fmt: skip


def _existing_parts(
    data_folder: Path, *given: str | Path | None
) -> tuple[SwitchboardParts, dict[str, str]]:
    """`find_parts` of the data folder and what is missing; an error when nothing is there."""
    if not data_folder.is_dir():
        raise FileNotFoundError(f"Switchboard data folder {data_folder} does not exist")
    parts = find_parts(data_folder, *given)
    missing = _missing_parts(parts)
    if len(missing) == 2:
        raise FileNotFoundError(
            f"nothing to prepare under {data_folder}: " + "; ".join(missing.values())
        )
    for csvs, reason in missing.items():
        logger.warning("%s not prepared: %s", csvs, reason)
    return parts, missing


def _result(save_folder: Path, csv_names: list[str], prepared: dict, missing: dict) -> dict:
    """What `prepare_switchboard` returns (its docstring), with stored summaries of fresh CSVs."""
    stored = read_json(save_folder / SUMMARY_NAME)
    csvs = {name: prepared.get(name, stored.get(name, {})) for name in csv_names}
    return {
        "save_folder": str(save_folder),
        "csvs": csvs,
        "glm": str(save_folder / GLM_CSV) if (save_folder / GLM_CSV).exists() else None,
        "prepared": sorted(prepared),
        "up_to_date": sorted(set(csv_names) - set(prepared)),
        "missing_parts": missing,
        "problems": sum(len(summary.get("problems", [])) for summary in csvs.values()),
    }


# ------------------------------------------------------------------ command line
def _print_summary(result: dict) -> None:
    for name, summary in result["csvs"].items():
        counts = summary.get("problem_counts", {})
        problems = ", ".join(f"{kind}={count}" for kind, count in sorted(counts.items()))
        print(
            f"{name:<20} {summary.get('utterances', 0):>7} utts {summary.get('hours', 0.0):>9.3f} h"
            f"  problems: {problems or 'none'}"
        )
    for csvs, reason in result["missing_parts"].items():
        print(f"not prepared: {csvs} ({reason})")


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (1 on an error, with its message)."""
    parser = argparse.ArgumentParser(
        prog="python recipes/Switchboard/prepare.py",
        description="SpeechBrain CSVs for Switchboard-1 (ms98) and Hub5'00 (eval2000).",
    )
    parser.add_argument("--data_folder", required=True, help="folder holding the LDC parts")
    parser.add_argument("--save_folder", required=True, help="where the CSVs go")
    parser.add_argument("--train_hours", type=float, default=None, help="train subset size")
    parser.add_argument("--dev_conversations", type=int, default=None, help="default: 1 %%")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_utt", type=int, default=300, help="cap on identical texts")
    parser.add_argument("--min_duration", type=float, default=None)
    parser.add_argument("--max_duration", type=float, default=None)
    parser.add_argument("--keep_partial_words", action="store_true")
    parser.add_argument("--keep_dev_callers", action="store_true", help="allow caller overlap")
    parser.add_argument("--swbd_folder", help="LDC97S62 folder (default: <data_folder>/LDC97S62)")
    parser.add_argument("--ms98_folder", help="swb_ms98_transcriptions folder")
    parser.add_argument("--conv_tab", help="conv_tab.csv (default: <swbd_folder>/docs/)")
    parser.add_argument("--hub5_audio_folder", help="LDC2002S09 hub5e_00/english folder")
    parser.add_argument("--hub5_stm", help="hub5e00.english.000405.stm")
    parser.add_argument("--hub5_glm", help="en20000405_hub5.glm")
    parser.add_argument("--force", action="store_true", help="redo even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = prepare_switchboard(
            args.data_folder,
            args.save_folder,
            train_hours=args.train_hours,
            dev_conversations=args.dev_conversations,
            seed=args.seed,
            max_utt=args.max_utt,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
            keep_partial=args.keep_partial_words,
            exclude_dev_callers=not args.keep_dev_callers,
            force=args.force,
            swbd_folder=args.swbd_folder,
            ms98_folder=args.ms98_folder,
            conv_tab=args.conv_tab,
            hub5_audio_folder=args.hub5_audio_folder,
            hub5_stm=args.hub5_stm,
            hub5_glm=args.hub5_glm,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _print_summary(result)
    print(f"{result['problems']} problem(s); details in {Path(args.save_folder) / SUMMARY_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
