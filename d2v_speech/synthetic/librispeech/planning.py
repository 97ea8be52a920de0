"""The plan of the embedded LibriSpeech-style corpus: which folders, how many hours each, which
speakers and sentences, one `Utterance` per file to synthesise (the design is in
`d2v_speech.synthetic.librispeech.generate`)."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from d2v_speech.synthetic.voices import (
    Speaker,
    build_pool_speakers,
    build_speakers,
)

# Measured mean duration per word after silence trimming, over the speaker table.
SECONDS_PER_WORD = 0.29
MAX_UTTERANCES_PER_CHAPTER = 100
MAX_EVAL_SPEAKERS = 20
CHAPTER_ID_RANGE = (1000, 300000)
FINETUNING_DIR = "librispeech_finetuning"
OTHER_POOL = "train-other-500"  # present only when other_pool_fraction > 0
POOL_FOLDERS = ("train-clean-100", OTHER_POOL)
POOL_VOICE_STREAM = 3  # pool-only speakers draw from their own generator: the rest stays as it was


@dataclass(frozen=True)
class SplitSpec:
    """One output folder: where it goes, how much audio, which speakers, which acoustics."""

    folder: str
    fraction_of_hours: float
    speakers: str  # "train", "pool", "dev-clean", "test-clean", "dev-other" or "test-other"
    degraded: bool


@dataclass(frozen=True)
class Utterance:
    """One file to synthesise."""

    index: int
    folder: str
    speaker: Speaker
    chapter: int
    number: int
    text: str
    degraded: bool

    @property
    def utterance_id(self) -> str:
        return f"{self.speaker.speaker_id}-{self.chapter}-{self.number:04d}"

    @property
    def relative_path(self) -> str:
        spk = self.speaker.speaker_id
        return f"{self.folder}/{spk}/{self.chapter}/{self.utterance_id}.flac"


def split_specs(pool_ratio: float = 1.0, other_pool_fraction: float = 0.0) -> list[SplitSpec]:
    """Every output folder, in the order sentences are handed out (held-out sets first).

    The pool is ``pool_ratio`` times ``hours``, ``other_pool_fraction`` of it in
    ``train-other-500`` (last, so the other folders' plan does not depend on it)."""
    specs = [
        SplitSpec("test-clean", 1 / 12, "test-clean", False),
        SplitSpec("test-other", 1 / 12, "test-other", True),
        SplitSpec("dev-clean", 1 / 12, "dev-clean", False),
        SplitSpec("dev-other", 1 / 12, "dev-other", True),
    ]
    for subset in range(6):
        for condition in ("clean", "other"):
            specs.append(
                SplitSpec(
                    f"{FINETUNING_DIR}/1h/{subset}/{condition}",
                    1 / 24,
                    "train",
                    condition == "other",
                )
            )
    for condition in ("clean", "other"):
        specs.append(
            SplitSpec(f"{FINETUNING_DIR}/9h/{condition}", 1 / 16, "train", condition == "other")
        )
    clean_share = pool_ratio * (1.0 - other_pool_fraction)
    specs.append(SplitSpec("train-clean-100", clean_share, "pool", False))
    if other_pool_fraction > 0:
        specs.append(SplitSpec(OTHER_POOL, pool_ratio * other_pool_fraction, "pool", True))
    return specs


def allocate_sentences(
    sentences: list[str], specs: list[SplitSpec], hours: float
) -> dict[str, list[str]]:
    """Hand out shuffled sentences to folders until each reaches its estimated duration.

    Each folder gets at least one sentence. Only the pool folders may reuse (their own)
    sentences; when there are two, the sentences left for the pool are split between them in
    proportion to their sizes, so they share none.
    """
    allocation: dict[str, list[str]] = {}
    cursor = 0
    pool_specs = [spec for spec in specs if spec.folder in POOL_FOLDERS]
    shares: dict[str, list[str]] = {}
    for spec in specs:
        target = spec.fraction_of_hours * hours * 3600.0
        if spec.folder in POOL_FOLDERS and not shares:
            shares = _pool_shares(sentences[cursor:], pool_specs)
        source = shares[spec.folder] if spec.folder in POOL_FOLDERS else sentences
        start = 0 if spec.folder in POOL_FOLDERS else cursor
        chosen: list[str] = []
        num_distinct = 0
        estimate = 0.0
        while not chosen or estimate < target:
            if start + num_distinct < len(source):
                chosen.append(source[start + num_distinct])
                num_distinct += 1
            elif spec.folder in POOL_FOLDERS and num_distinct:
                chosen.append(chosen[len(chosen) % num_distinct])
            else:
                raise ValueError(
                    f"hours={hours} needs more distinct sentences than the {len(sentences)} "
                    f"available (ran out at '{spec.folder}'); use a smaller --hours"
                )
            estimate += len(chosen[-1].split()) * SECONDS_PER_WORD
        if spec.folder not in POOL_FOLDERS:
            cursor += num_distinct
        allocation[spec.folder] = chosen
    return allocation


def _pool_shares(remaining: list[str], pool_specs: list[SplitSpec]) -> dict[str, list[str]]:
    """Disjoint runs of the remaining sentences for the pool folders, sized like the folders."""
    if len(pool_specs) == 1:
        return {pool_specs[0].folder: remaining}
    total = sum(spec.fraction_of_hours for spec in pool_specs)
    shares, start = {}, 0
    for k, spec in enumerate(pool_specs):
        last = k == len(pool_specs) - 1
        size = (
            len(remaining) - start
            if last
            else round(len(remaining) * spec.fraction_of_hours / total)
        )
        shares[spec.folder] = remaining[start : start + size]
        start += size
    return shares


def choose_speaker_groups(
    speakers: list[Speaker],
    num_pool_utterances: int,
    rng: np.random.Generator,
    pool_only: Sequence[Speaker] = (),
) -> dict[str, list[Speaker]]:
    """Speakers of each role, in the order they take turns.

    ``train`` are the seen voices that actually speak in the unlabelled pool (all of them unless
    the corpus is tiny); dev-clean and test-clean take disjoint halves of them (at most
    ``MAX_EVAL_SPEAKERS`` each), so every clean evaluation voice is heard in training. ``pool``
    is ``train`` followed by the ``pool_only`` speakers.
    """
    seen = [speaker for speaker in speakers if speaker.group == "seen"]
    order = [seen[i] for i in rng.permutation(len(seen))]
    train = order[: max(1, min(len(order), num_pool_utterances))]
    shuffled = [train[i] for i in rng.permutation(len(train))]
    half = max(1, len(shuffled) // 2)
    return {
        "train": train,
        "pool": train + list(pool_only),
        "dev-clean": shuffled[:half][:MAX_EVAL_SPEAKERS],
        "test-clean": (shuffled[half:] or shuffled)[:MAX_EVAL_SPEAKERS],
        "dev-other": [speaker for speaker in speakers if speaker.group == "dev-other"],
        "test-other": [speaker for speaker in speakers if speaker.group == "test-other"],
    }


def plan_corpus(
    sentences: list[str],
    hours: float,
    seed: int,
    pool_hours: float | None = None,
    other_pool_fraction: float = 0.0,
    pool_voices: int = 0,
) -> list[Utterance]:
    """Every utterance of the corpus (text, speaker, chapter, acoustics), fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    shuffled = [sentences[i] for i in rng.permutation(len(sentences))]
    pool_ratio = 1.0 if pool_hours is None else pool_hours / hours
    specs = split_specs(pool_ratio, other_pool_fraction)
    allocation = allocate_sentences(shuffled, specs, hours)
    speakers = build_speakers(rng)
    pool_only = build_pool_speakers(
        pool_voices,
        np.random.default_rng([seed, POOL_VOICE_STREAM]),
        {speaker.speaker_id for speaker in speakers},
    )
    groups = choose_speaker_groups(speakers, len(allocation["train-clean-100"]), rng, pool_only)
    chapter_ids = iter(int(c) for c in rng.permutation(np.arange(*CHAPTER_ID_RANGE)))
    utterances: list[Utterance] = []
    for spec in specs:
        order = groups[spec.speakers]
        if spec.speakers in ("train", "pool") and spec.folder != "train-clean-100":
            order = [order[i] for i in rng.permutation(len(order))]
        texts = allocation[spec.folder]
        num_distinct = len(set(texts))
        chapters: dict[int, list[int]] = {}
        for position, text in enumerate(texts):
            # A reused pool sentence goes to the next speaker along, never the same one again.
            turn = position % num_distinct + position // num_distinct
            speaker = order[turn % len(order)]
            state = chapters.get(speaker.speaker_id)
            if state is None or state[1] == MAX_UTTERANCES_PER_CHAPTER:
                state = [next(chapter_ids), 0]
                chapters[speaker.speaker_id] = state
            utterances.append(
                Utterance(
                    len(utterances), spec.folder, speaker, state[0], state[1], text, spec.degraded
                )
            )
            state[1] += 1
    return utterances
