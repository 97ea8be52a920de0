"""What to render: every conversation's part, number, speaker pair, sentences and length."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from d2v_speech.synthetic.switchboard.corpus_layout import DISCS, HUB5_AUDIO, SWBD_ROOT
from d2v_speech.synthetic.voices import Speaker, build_speakers

TRAIN_NUMBERS = (2001, 4941)  # Switchboard-1 conversation numbers
EVAL_NUMBERS = (4000, 7000)
CALLER_NUMBERS = (1000, 2000)
SENTENCE_WORDS = (4, 18)
# Sentences handed to a conversation per second of target length (about 3.5 s per segment).
SENTENCES_PER_SECOND = 0.5
EXTRA_SENTENCES = 4
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "steph", "linda")
FEMALE_FLITE_VOICES = ("slt",)


@dataclass(frozen=True)
class ConversationSpec:
    """One conversation to render; ``speakers`` are the talkers on channels A and B."""

    index: int
    part: str  # "train", "swbd" or "callhome"
    number: int
    speakers: tuple[Speaker, Speaker]
    sentences: tuple[str, ...]
    target_seconds: float
    disc: str = ""  # swb1_d1..swb1_d4 for training conversations

    @property
    def name(self) -> str:
        """The audio file stem: sw02001, sw_4390 or en_4390."""
        prefix = {"train": "sw0", "swbd": "sw_", "callhome": "en_"}[self.part]
        return f"{prefix}{self.number}"

    @property
    def sph_path(self) -> str:
        if self.part == "train":
            return f"{SWBD_ROOT}/{self.disc}/data/{self.name}.sph"
        return f"{HUB5_AUDIO}/{self.name}.sph"


def speaker_sex(speaker: Speaker) -> str:
    """ "F" or "M" from the voice (espeak-ng variant or flite voice)."""
    female = speaker.variant in FEMALE_VARIANTS or speaker.voice in FEMALE_FLITE_VOICES
    return "F" if female else "M"


def pool_size(conversations: int, available: int) -> int:
    """Training speakers: about one per two conversations, enough for distinct pairs."""
    size = max(3, math.ceil(conversations / 2))
    while size * (size - 1) // 2 < conversations:
        size += 1
    if size > available:
        raise ValueError(
            f"{conversations} conversations need {size} distinct training voices, only "
            f"{available} exist; use fewer conversations"
        )
    return size


def pair_speakers(
    pool: list[Speaker], conversations: int, rng: np.random.Generator
) -> list[tuple[Speaker, Speaker]]:
    """Pairs in which speakers recur (least used first, ties at random); no pair talks twice.

    ``pool`` must allow ``conversations`` distinct pairs (see :func:`pool_size`).
    """
    uses: Counter = Counter()
    met: set[frozenset[int]] = set()
    pairs = []

    def fresh(a: Speaker, b: Speaker) -> bool:
        return a is not b and frozenset((a.speaker_id, b.speaker_id)) not in met

    for _ in range(conversations):
        order = [pool[i] for i in rng.permutation(len(pool))]
        available = [s for s in order if any(fresh(s, other) for other in order)]
        first = min(available, key=lambda s: uses[s.speaker_id])
        second = min((s for s in order if fresh(first, s)), key=lambda s: uses[s.speaker_id])
        uses.update((first.speaker_id, second.speaker_id))
        met.add(frozenset((first.speaker_id, second.speaker_id)))
        pairs.append((first, second))
    return pairs


def _eval_pairs(group: list[Speaker], count: int) -> list[tuple[Speaker, Speaker]]:
    """Consecutive distinct speakers of a held-out group, cycling when there are few."""
    return [(group[(2 * i) % len(group)], group[(2 * i + 1) % len(group)]) for i in range(count)]


def _sentences_needed(seconds: tuple[float, float]) -> int:
    return math.ceil(seconds[1] * SENTENCES_PER_SECOND) + EXTRA_SENTENCES


def plan_corpus(
    sentences: list[str],
    conversations: int,
    eval_conversations: int,
    train_seconds: tuple[float, float],
    eval_seconds: tuple[float, float],
    seed: int,
) -> tuple[list[ConversationSpec], dict[int, int]]:
    """Every conversation (speakers, sentences, number, length) and the caller numbers.

    Returns the specs (Hub5'00 first, then training) and speaker_id -> caller number of the
    training speakers. Each conversation gets its own sentences; none is used twice.
    """
    rng = np.random.default_rng(seed)
    shuffled = [sentences[i].lower() for i in rng.permutation(len(sentences))]
    speakers = build_speakers(rng)
    seen = [s for s in speakers if s.group == "seen"]
    pool = [seen[i] for i in rng.permutation(len(seen))][: pool_size(conversations, len(seen))]
    train_pairs = pair_speakers(pool, conversations, rng)
    groups = {
        part: [s for s in speakers if s.group == group]
        for part, group in (("swbd", "dev-other"), ("callhome", "test-other"))
    }
    for part in groups:
        groups[part] = [groups[part][i] for i in rng.permutation(len(groups[part]))]
    train_numbers = sorted(
        int(n) for n in rng.choice(np.arange(*TRAIN_NUMBERS), conversations, replace=False)
    )
    candidates = np.setdiff1d(np.arange(*EVAL_NUMBERS), train_numbers)
    eval_numbers = [int(n) for n in rng.choice(candidates, 2 * eval_conversations, replace=False)]
    callers = rng.choice(np.arange(*CALLER_NUMBERS), len(pool), replace=False)
    caller_of = {s.speaker_id: int(c) for s, c in zip(pool, callers)}

    jobs = [
        ("swbd", n, p)
        for n, p in zip(
            eval_numbers[:eval_conversations], _eval_pairs(groups["swbd"], eval_conversations)
        )
    ]
    jobs += [
        ("callhome", n, p)
        for n, p in zip(
            eval_numbers[eval_conversations:], _eval_pairs(groups["callhome"], eval_conversations)
        )
    ]
    jobs += [("train", n, p) for n, p in zip(train_numbers, train_pairs)]
    specs, cursor = [], 0
    for index, (part, number, pair) in enumerate(jobs):
        seconds = train_seconds if part == "train" else eval_seconds
        needed = _sentences_needed(seconds)
        if cursor + needed > len(shuffled):
            raise ValueError(
                f"{len(jobs)} conversations need more than the {len(shuffled)} available "
                "sentences; use fewer or shorter conversations"
            )
        disc = ""
        if part == "train":
            disc = DISCS[train_numbers.index(number) * len(DISCS) // conversations]
        specs.append(
            ConversationSpec(
                index,
                part,
                number,
                pair,
                tuple(shuffled[cursor : cursor + needed]),
                round(float(rng.uniform(*seconds)), 3),
                disc,
            )
        )
        cursor += needed
    return specs, caller_of
