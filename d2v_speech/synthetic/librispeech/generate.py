"""Embedded corpus generator: a small synthetic LibriSpeech + Libri-light in their exact layouts.

Usage (the package's ``__main__.py`` runs :func:`main`)::

    python -m d2v_speech.synthetic.librispeech --out data/MiniLibriSpeech \
        [--hours 2.0] [--pool_hours 10 --other_pool_fraction 0.5 --pool_voices 200] \
        [--seed 0] [--jobs 2] [--force]

Layout written under ``out`` (identical to the real corpora, so the real preparation runs on it)::

    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    librispeech_finetuning/1h/{0..5}/{clean,other}/<speaker>/<chapter>/...   (same files)
    librispeech_finetuning/9h/{clean,other}/<speaker>/<chapter>/...
    speakers.csv   every speaker's TTS settings and the splits it appears in
    corpus.json    hours / utterances / speakers per split, seed, generator version, tool versions

Sizes scale with ``hours`` (H, default 2): train-clean-100 (the unlabelled pool) H hours; each
of dev-clean, dev-other, test-clean, test-other H/12 (10 min at H=2); six disjoint Libri-light
10-minute subsets ``1h/k`` of H/12 each (1 h in all at H=2), half clean and half other; ``9h``
H/8 (15 min at H=2, a scaled-down stand-in for the real 9 h), half clean and half other.
Sizes are planned from an estimate of seconds per word; ``corpus.json`` gives the real hours.

Corpus v3 (the default): the unlabelled pool is ``pool_hours`` P = 5 H (10 h at H = 2, ten times
the labelled 1 h), half of it ``train-other-500``, with 200 pool-only voices; the v2 corpus of
earlier releases is ``--pool_hours H --other_pool_fraction 0 --pool_voices 0``.

The pool size (``pool_hours``, P) leaves every other set as ``hours`` makes it; with
``other_pool_fraction`` f > 0 the pool is split as LibriSpeech's: ``train-clean-100`` (1 - f) P
hours of clean audio and ``train-other-500`` f P hours of training voices with the 'other'
acoustics of the labelled ``other`` folders. The two pool folders share no sentence (each
reuses its own when the fortunes run out). ``pool_voices`` V adds V pool-only speakers
(``d2v_speech.synthetic.voices.build_pool_speakers``) who speak in the pool folders beside the
training voices and nowhere else, as most LibriSpeech training speakers are absent from the
Libri-light splits. With P = H, f = 0, V = 0 the corpus is byte-identical to the v2 corpus.

Design choices:
- The labelled (Libri-light) utterances are spoken by training speakers but are *separate*
  recordings with their own sentences and chapters: they do not overlap the unlabelled pool.
  (In the real corpora they are a subset of LibriSpeech training audio; here keeping them
  disjoint gives the small demo more distinct data and makes "no sentence in two splits" hold.)
- ``other`` folders of the Libri-light sets use training voices with degraded acoustics
  (like train-other-500 speakers); dev-other/test-other use held-out voices *and* degraded
  acoustics (reverberation with RT60 0.3-0.8 s at a direct-to-reverberant ratio of -5 to 5 dB,
  coloured noise at 10-20 dB SNR, band-limiting).
- dev-clean/test-clean use training voices (disjoint halves of them) with held-out sentences.
- No sentence appears in two splits. If the pool needs more sentences than remain, it reuses
  its own sentences (with other speakers); the evaluation and labelled sets never repeat.
- Every utterance has its own random generator seeded by (seed, utterance index), so the output
  does not depend on ``jobs``. Files go to a staging folder first and are moved into place
  only when everything is written; a stamp file marks a complete corpus. An interrupted run
  resumes from its staging folder; a lock file makes concurrent callers take turns.
- Identical bytes need identical espeak-ng, flite, libsndfile and fortunes versions; the
  tool versions and a digest of the plan are part of the stamp.
"""

import argparse
import hashlib
import logging
import shutil
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from d2v_speech.atomic_files import json_text, read_json, write_text_atomic
from d2v_speech.synthetic.fortune_sentences import FORTUNE_DIR, load_sentences
from d2v_speech.synthetic.librispeech.planning import (
    FINETUNING_DIR,
    OTHER_POOL,
    Utterance,
    plan_corpus,
)
from d2v_speech.synthetic.staging import exclusive, is_stamped, open_staging, publish
from d2v_speech.synthetic.tts import SAMPLE_RATE, check_tools, render_utterance, write_flac_atomic
from d2v_speech.synthetic.voices import (
    write_speaker_table,
)

logger = get_logger(__name__)

GENERATOR_VERSION = "2"  # 2: reverberation with a direct-to-reverberant ratio
LIBRISPEECH_SPLITS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
STAMP_NAME = ".minicorpus_complete.json"
STAGING_NAME = ".minicorpus_staging"
LOCK_NAME = ".minicorpus.lock"
OWNED_ENTRIES = (*LIBRISPEECH_SPLITS, FINETUNING_DIR, "speakers.csv", "corpus.json")
# corpus v3: a pool of 5 x hours (10x the labelled 1 h at hours=2), half 'other', 200 pool voices
DEFAULT_POOL_RATIO = 5.0
DEFAULT_OTHER_POOL_FRACTION = 0.5
DEFAULT_POOL_VOICES = 200


def _render_to_file(task: tuple[Utterance, str, int]) -> tuple[int, int]:
    """Pool worker: synthesise one utterance into the staging folder; returns (index, samples)."""
    utterance, staging, seed = task
    path = Path(staging) / utterance.relative_path
    if path.exists():
        return utterance.index, sf.info(str(path)).frames
    rng = np.random.default_rng([seed, utterance.index])
    samples = render_utterance(utterance.speaker, utterance.text, utterance.degraded, rng)
    write_flac_atomic(path, samples)
    return utterance.index, len(samples)


def _render_all(
    utterances: list[Utterance], staging: Path, seed: int, jobs: int, progress: bool
) -> list[int]:
    """Synthesise all utterances, skipping files a previous run finished. Returns sample counts."""
    tasks = [(utterance, str(staging), seed) for utterance in utterances]
    num_samples = [0] * len(utterances)
    bar = tqdm(total=len(tasks), desc="synthesising", unit="utt", disable=not progress)
    if jobs == 1:
        results = map(_render_to_file, tasks)
        for index, count in results:
            num_samples[index] = count
            bar.update()
    else:
        with Pool(jobs) as pool:
            for index, count in pool.imap_unordered(_render_to_file, tasks, chunksize=4):
                num_samples[index] = count
                bar.update()
    bar.close()
    return num_samples


def _write_transcripts(utterances: list[Utterance], staging: Path) -> None:
    """One ``<speaker>-<chapter>.trans.txt`` per chapter folder, lines sorted by utterance id."""
    chapters: dict[tuple[str, int, int], list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        chapters[(utterance.folder, utterance.speaker.speaker_id, utterance.chapter)].append(
            utterance
        )
    for (folder, speaker_id, chapter), members in chapters.items():
        lines = [f"{u.utterance_id} {u.text}\n" for u in sorted(members, key=lambda u: u.number)]
        name = f"{speaker_id}-{chapter}.trans.txt"
        write_text_atomic(staging / folder / str(speaker_id) / str(chapter) / name, "".join(lines))


def _folder_stats(members: list[Utterance], num_samples: list[int]) -> dict:
    seconds = sum(num_samples[u.index] for u in members) / SAMPLE_RATE
    return {
        "utterances": len(members),
        "hours": round(seconds / 3600.0, 4),
        "speakers": len({u.speaker.speaker_id for u in members}),
        "words": sum(len(u.text.split()) for u in members),
    }


def summarize(utterances: list[Utterance], num_samples: list[int], settings: dict) -> dict:
    """The ``corpus.json`` content: sizes per folder and per Libri-light subset, and settings."""
    by_folder: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        by_folder[utterance.folder].append(utterance)
    folders = {}
    for folder, members in sorted(by_folder.items()):
        folders[folder] = _folder_stats(members, num_samples)
        folders[folder]["degraded_acoustics"] = members[0].degraded

    def subset(prefixes: tuple[str, ...]) -> dict:
        members = [u for u in utterances if u.folder.startswith(prefixes)]
        return _folder_stats(members, num_samples)

    ll = FINETUNING_DIR
    subsets = {f"1h/{k}": subset((f"{ll}/1h/{k}/",)) for k in range(6)}
    subsets["1h"] = subset((f"{ll}/1h/",))
    subsets["9h"] = subset((f"{ll}/9h/",))
    subsets["10h"] = subset((f"{ll}/1h/", f"{ll}/9h/"))
    total_seconds = sum(num_samples) / SAMPLE_RATE
    return {
        # the generator's name as corpora record it (its module before the move to
        # d2v_speech.synthetic.librispeech), kept so that the same settings give the same bytes
        "generator": "d2v_speech.data.minicorpus",
        **settings,
        "sample_rate": SAMPLE_RATE,
        "labelled_overlaps_unlabelled_pool": False,
        "folders": folders,
        "librilight_subsets": subsets,
        "total_hours": round(total_seconds / 3600.0, 4),
        "total_utterances": len(utterances),
    }


def _settings(
    hours: float,
    seed: int,
    tools: dict[str, str],
    sentences: list[str],
    plan: list[Utterance],
    pool: dict | None = None,
) -> dict:
    """Everything that changes the output bytes; a different value means regenerate.

    The plan digest covers every file name, text, speaker setting and condition, so any change
    in the fortunes or in planning is noticed; rendering changes bump ``GENERATOR_VERSION``.
    """
    lines = (f"{u.relative_path}\t{u.text}\t{u.speaker}\t{u.degraded}" for u in plan)
    return {
        "generator_version": GENERATOR_VERSION,
        "hours": hours,
        "seed": seed,
        "tools": tools,
        "sentences_available": len(sentences),
        "plan_sha256": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest(),
        # only a non-default pool is recorded, so corpora made before the option stay valid
        **({"pool": pool} if pool else {}),
    }


def owned_entries(settings: dict) -> tuple[str, ...]:
    """What a corpus with ``settings`` writes under its folder."""
    has_other_pool = settings.get("pool", {}).get("other_pool_fraction", 0) > 0
    return OWNED_ENTRIES + ((OTHER_POOL,) if has_other_pool else ())


def is_complete(out_dir: Path, settings: dict) -> bool:
    """True if ``out_dir`` holds a finished corpus generated with exactly ``settings``."""
    return is_stamped(out_dir, settings, STAMP_NAME, owned_entries(settings))


def generate_corpus(
    out_dir: str | Path,
    hours: float = 2.0,
    seed: int = 0,
    jobs: int = 2,
    force: bool = False,
    fortune_dir: str | Path = FORTUNE_DIR,
    progress: bool = True,
    pool_hours: float | None = None,
    other_pool_fraction: float = DEFAULT_OTHER_POOL_FRACTION,
    pool_voices: int = DEFAULT_POOL_VOICES,
) -> dict:
    """Generate the embedded corpus under ``out_dir`` and return its summary (``corpus.json``).

    A complete corpus with the same settings is left untouched (fast no-op) unless ``force``.
    ``hours`` sizes every set; ``pool_hours`` the unlabelled pool (None: ``DEFAULT_POOL_RATIO``
    times ``hours``);
    ``other_pool_fraction`` of the pool goes to ``train-other-500`` with degraded acoustics;
    ``pool_voices`` pool-only speakers join the training voices in the pool.
    """
    if not (isinstance(hours, int | float) and hours > 0):
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if pool_hours is not None and not (isinstance(pool_hours, int | float) and pool_hours > 0):
        raise ValueError(f"pool_hours must be a positive number or None, got {pool_hours!r}")
    if not 0.0 <= other_pool_fraction < 1.0:
        raise ValueError(f"other_pool_fraction must be in [0, 1), got {other_pool_fraction!r}")
    if pool_hours is None:
        pool_hours = DEFAULT_POOL_RATIO * hours
    out_dir = Path(out_dir)
    sentences = load_sentences(Path(fortune_dir))
    utterances = plan_corpus(
        sentences, float(hours), seed, pool_hours, other_pool_fraction, pool_voices
    )
    pool = None
    if pool_hours != hours or other_pool_fraction > 0 or pool_voices:
        pool = {"pool_hours": pool_hours, "other_pool_fraction": other_pool_fraction}
        if pool_voices:
            pool["pool_voices"] = pool_voices
    settings = _settings(float(hours), seed, check_tools(), sentences, utterances, pool)
    if not force and is_complete(out_dir, settings):
        logger.info(
            "Embedded corpus in %s is complete with these settings; nothing to do.", out_dir
        )
        return read_json(out_dir / "corpus.json")
    with exclusive(out_dir, LOCK_NAME):
        # Another process may have finished the same corpus while this one waited for the lock.
        if not force and is_complete(out_dir, settings):
            return read_json(out_dir / "corpus.json")
        return _generate(out_dir, utterances, settings, seed, jobs, force, progress)


def _generate(
    out_dir: Path,
    utterances: list[Utterance],
    settings: dict,
    seed: int,
    jobs: int,
    force: bool,
    progress: bool,
) -> dict:
    """Render, write transcripts and manifests into staging, then publish (lock held)."""
    started = time.perf_counter()
    staging = out_dir / STAGING_NAME
    open_staging(staging, settings, force)
    num_samples = _render_all(utterances, staging, seed, jobs, progress)
    missing = [u.relative_path for u in utterances if not (staging / u.relative_path).exists()]
    if missing:
        raise RuntimeError(
            f"{len(missing)} files vanished from {staging} during generation (e.g. {missing[0]}); "
            "is another program writing to the same folder? Run again."
        )
    _write_transcripts(utterances, staging)
    splits_of: dict[int, list[str]] = defaultdict(list)
    for utterance in utterances:
        if utterance.folder not in splits_of[utterance.speaker.speaker_id]:
            splits_of[utterance.speaker.speaker_id].append(utterance.folder)
    speakers = list({u.speaker.speaker_id: u.speaker for u in utterances}.values())
    write_speaker_table(speakers, splits_of, staging / "speakers.csv")
    summary = summarize(utterances, num_samples, settings)
    write_text_atomic(staging / "corpus.json", json_text(summary))
    owned = owned_entries(settings)
    if OTHER_POOL not in owned and (out_dir / OTHER_POOL).is_dir():
        shutil.rmtree(out_dir / OTHER_POOL)  # left by an earlier corpus with an 'other' pool
    publish(staging, out_dir, settings, STAMP_NAME, owned)
    logger.info(
        "Generated %.2f h (%d utterances) in %s in %.1f s.",
        summary["total_hours"],
        summary["total_utterances"],
        out_dir,
        time.perf_counter() - started,
    )
    return summary


def _format_summary(summary: dict) -> str:
    lines = [f"{'folder':<42} {'utts':>6} {'hours':>8} {'speakers':>8}"]
    for folder, stats in summary["folders"].items():
        lines.append(
            f"{folder:<42} {stats['utterances']:>6} {stats['hours']:>8.3f} {stats['speakers']:>8}"
        )
    for name, stats in summary["librilight_subsets"].items():
        lines.append(
            f"{'librilight ' + name:<42} {stats['utterances']:>6} {stats['hours']:>8.3f} "
            f"{stats['speakers']:>8}"
        )
    lines.append(f"total: {summary['total_hours']:.3f} h, {summary['total_utterances']} utterances")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m d2v_speech.synthetic.librispeech",
        description="Generate the embedded synthetic LibriSpeech/Libri-light corpus.",
    )
    parser.add_argument("--out", default="data/MiniLibriSpeech", help="output folder")
    parser.add_argument("--hours", type=float, default=2.0, help="size of every set (hours)")
    parser.add_argument(
        "--pool_hours", type=float,
        help=f"unlabelled pool hours (default: {DEFAULT_POOL_RATIO:g} x --hours)",
    )  # fmt: skip
    parser.add_argument(
        "--other_pool_fraction", type=float, default=DEFAULT_OTHER_POOL_FRACTION,
        help="share of the pool in train-other-500, with 'other' acoustics (e.g. 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--pool_voices", type=int, default=DEFAULT_POOL_VOICES,
        help="pool-only speakers beside the training voices (up to 270)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = generate_corpus(
        args.out, args.hours, args.seed, args.jobs, args.force,
        pool_hours=args.pool_hours, other_pool_fraction=args.other_pool_fraction,
        pool_voices=args.pool_voices,
    )  # fmt: skip
    print(_format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
