"""The speaker table of the embedded corpora: one synthetic speaker = one fixed TTS voice setting.

The groups are named after the LibriSpeech-style corpus's sets; the mini Switchboard draws its
callers from the training voices and its Hub5'00 speakers from the held-out groups.

Training ("seen") speakers are espeak-ng English accents x voice variants plus flite voices.
Held-out ("unseen") speakers, for dev-other and test-other only, use accents *and* variants that no
training speaker uses, and a flite voice absent from training, so no voice of the "other" sets is
heard in training. dev-other and test-other also use disjoint variants, as LibriSpeech's dev and
test sets have disjoint speakers.

Pool-only speakers (:func:`build_pool_speakers`) speak in the unlabelled pool and nowhere else, as
most of LibriSpeech's 2,338 training speakers are absent from a Libri-light fine-tuning split:
the seen accents with espeak-ng variants that no other group uses (never a held-out variant or
the klatt family of test-other's ``klatt``), at wider pitch and speed ranges.
"""

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

SEEN_ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
SEEN_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4")
SEEN_FLITE_VOICES = ("kal", "kal16", "awb", "rms")
UNSEEN_ESPEAK_ACCENTS = ("en-gb-x-gbcwmd", "en-us-nyc", "en-gb-x-gbclan")
DEV_OTHER_VARIANTS = ("m7", "f5", "klatt2", "steph")
TEST_OTHER_VARIANTS = ("m8", "klatt", "linda", "Andy")
TEST_OTHER_FLITE_VOICES = ("slt",)
# Typical f0 (Hz) of each flite voice, around which a speaker's pitch is drawn.
# Natural-sounding espeak-ng variants heard only in the unlabelled pool (no robot, whisper or
# klatt voices; none derived from a held-out variant such as steph2 or AnxiousAndy).
POOL_ESPEAK_VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Annie", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2",
    "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "Lee",
    "Marco", "marcelo", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Nguyen",
    "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby",
    "travis", "victor", "zac", "anika", "grandma", "grandpa", "Storm",
)  # fmt: skip
FLITE_BASE_F0 = {"kal": 105.0, "kal16": 105.0, "awb": 120.0, "rms": 110.0, "slt": 170.0}

ESPEAK_PITCH_RANGE = (25, 75)
ESPEAK_WPM_RANGE = (145, 185)
POOL_PITCH_RANGE = (15, 85)
POOL_WPM_RANGE = (130, 200)
FLITE_F0_SCALE_RANGE = (0.85, 1.15)
FLITE_STRETCH_RANGE = (0.9, 1.15)
GAIN_RANGE = (0.3, 0.9)
SPEAKER_ID_RANGE = (100, 10000)


@dataclass(frozen=True)
class Speaker:
    """Fixed synthesis settings of one speaker.

    ``pitch`` and ``speed`` are in the engine's own units: for espeak-ng, ``-p`` (0-99) and ``-s``
    (words per minute); for flite, the f0 target mean in Hz and the duration stretch factor.
    ``gain`` is the peak amplitude of every utterance (fraction of full scale). ``group`` is
    ``seen`` (training voices), ``pool`` (heard only in the unlabelled pool), ``dev-other`` or
    ``test-other`` (held-out voices).
    """

    speaker_id: int
    engine: str
    voice: str
    variant: str
    pitch: float
    speed: float
    gain: float
    group: str

    @property
    def voice_key(self) -> tuple[str, str, str]:
        """(engine, voice, variant): what makes two speakers sound like the same voice."""
        return (self.engine, self.voice, self.variant)


def _voice_specs() -> list[tuple[str, str, str, str]]:
    """(group, engine, voice, variant) of every speaker, in a fixed order."""
    specs = [
        ("seen", "espeak-ng", accent, variant)
        for accent in SEEN_ESPEAK_ACCENTS
        for variant in SEEN_ESPEAK_VARIANTS
    ]
    specs += [("seen", "flite", voice, "") for voice in SEEN_FLITE_VOICES]
    for group, variants in (("dev-other", DEV_OTHER_VARIANTS), ("test-other", TEST_OTHER_VARIANTS)):
        specs += [
            (group, "espeak-ng", accent, variant)
            for accent in UNSEEN_ESPEAK_ACCENTS
            for variant in variants
        ]
    specs += [("test-other", "flite", voice, "") for voice in TEST_OTHER_FLITE_VOICES]
    return specs


def build_speakers(rng: np.random.Generator) -> list[Speaker]:
    """Draw every speaker's id, pitch, speed and gain; the voice list itself is fixed."""
    specs = _voice_specs()
    low, high = SPEAKER_ID_RANGE
    ids = rng.choice(np.arange(low, high), size=len(specs), replace=False)
    speakers = []
    for speaker_id, (group, engine, voice, variant) in zip(ids, specs):
        if engine == "espeak-ng":
            pitch = float(rng.integers(ESPEAK_PITCH_RANGE[0], ESPEAK_PITCH_RANGE[1] + 1))
            speed = float(rng.integers(ESPEAK_WPM_RANGE[0], ESPEAK_WPM_RANGE[1] + 1))
        else:
            pitch = round(FLITE_BASE_F0[voice] * rng.uniform(*FLITE_F0_SCALE_RANGE), 1)
            speed = round(rng.uniform(*FLITE_STRETCH_RANGE), 3)
        gain = round(rng.uniform(*GAIN_RANGE), 3)
        speakers.append(Speaker(int(speaker_id), engine, voice, variant, pitch, speed, gain, group))
    return speakers


def pool_voice_combinations() -> list[tuple[str, str]]:
    """Every (accent, variant) a pool-only speaker may use, in a fixed order."""
    return [(accent, variant) for accent in SEEN_ESPEAK_ACCENTS for variant in POOL_ESPEAK_VARIANTS]


def build_pool_speakers(count: int, rng: np.random.Generator, taken_ids: set[int]) -> list[Speaker]:
    """``count`` pool-only speakers: distinct (seen accent, pool variant) pairs with their own
    pitch, speed and gain, and speaker ids outside ``taken_ids``."""
    combinations = pool_voice_combinations()
    if not 0 <= count <= len(combinations):
        raise ValueError(
            f"pool_voices must be between 0 and {len(combinations)} "
            f"(the seen accents x pool variants), got {count}"
        )
    chosen = rng.choice(len(combinations), size=count, replace=False)
    low, high = SPEAKER_ID_RANGE
    free_ids = np.setdiff1d(np.arange(low, high), np.fromiter(taken_ids, dtype=np.int64))
    ids = rng.choice(free_ids, size=count, replace=False)
    speakers = []
    for speaker_id, index in zip(ids, chosen):
        accent, variant = combinations[int(index)]
        pitch = float(rng.integers(POOL_PITCH_RANGE[0], POOL_PITCH_RANGE[1] + 1))
        speed = float(rng.integers(POOL_WPM_RANGE[0], POOL_WPM_RANGE[1] + 1))
        gain = round(rng.uniform(*GAIN_RANGE), 3)
        speakers.append(
            Speaker(int(speaker_id), "espeak-ng", accent, variant, pitch, speed, gain, "pool")
        )
    return speakers


def write_speaker_table(
    speakers: list[Speaker], splits_of: dict[int, list[str]], path: Path
) -> None:
    """Write ``speakers.csv``: every speaker's settings plus the splits it speaks in."""
    names = [field.name for field in fields(Speaker)] + ["splits"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for speaker in sorted(speakers, key=lambda s: s.speaker_id):
            row = asdict(speaker)
            row["splits"] = " ".join(splits_of.get(speaker.speaker_id, []))
            writer.writerow(row)


def read_speaker_table(path: Path) -> list[dict[str, str]]:
    """Rows of a ``speakers.csv`` written by :func:`write_speaker_table`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
