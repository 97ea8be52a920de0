"""Transcript tokens of a segment: ms98 (Switchboard-1) and STM (Hub5'00) markup, at real rates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Per-word rates of the markup, close to the ms98 transcripts of Switchboard-1.
RATES = {
    "hesitation": 0.035,
    "repetition": 0.02,
    "restart": 0.012,  # a partial head of the next word, then the word
    "partial_tail": 0.003,  # the word replaced by its tail (-[th]at)
    "laughter_word": 0.006,
    "coinage": 0.002,
    "reduced_them": 0.3,  # of the occurrences of "them"
    "event": 0.017,  # [noise], [laughter] or [vocalized-noise] before a word
}
SEGMENT_RATES = {"discourse": 0.3, "aside": 0.01, "backchannel": 0.35, "ignore": 0.08}
EVENTS = (("[noise]", "noise"), ("[laughter]", "laughter"), ("[vocalized-noise]", "hum"))
EVENT_WEIGHTS = (0.35, 0.35, 0.3)
HESITATION_WORDS = ("uh", "um")
DISCOURSE_MARKERS = ("well", "so", "yeah", "oh", "you know", "i mean", "okay")
ASIDES = ("hold on a second", "just a minute", "be quiet honey", "i'm on the phone")
COINAGE_SUFFIXES = ("ish", "wise")
BACKCHANNELS = (
    ("uh-huh", 0.3),
    ("yeah", 0.25),
    ("um-hum", 0.15),
    ("right", 0.1),
    ("oh", 0.05),
    ("[laughter]", 0.1),
    ("[vocalized-noise]", 0.05),
)
EVAL_BACKCHANNELS = (("uh-huh", 0.35), ("yeah", 0.3), ("um-hum", 0.15), ("right", 0.15))
STM_OPTIONAL_HESITATION = 0.2  # share of hesitations written (UH)/(UM) instead of (%HESITATION)
IGNORE_MARKER = "IGNORE_TIME_SEGMENT_IN_SCORING"


@dataclass(frozen=True)
class Token:
    """One transcript token and how to render it.

    ``kind``: "speech" (``spoken`` said by TTS; runs of them are one TTS call), "head"/"tail"
    (``spoken`` synthesised, then only its first/last ``keep`` fraction kept), "laugh_word",
    "noise", "laughter", "hum", "unintelligible" (``spoken`` reversed) or "marker" (silent).
    ``tag`` names the phenomenon for the counts in the manifest.
    """

    written: str
    kind: str
    spoken: str = ""
    keep: float = 1.0
    tag: str = "word"


def _speech(written: str, spoken: str | None = None, tag: str = "word") -> Token:
    return Token(written, "speech", written if spoken is None else spoken, tag=tag)


def _event(written: str, kind: str) -> Token:
    return Token(written, kind, tag=kind)


def choose(rng: np.random.Generator, options, weights=None):
    """One element of ``options`` (weights need not sum to one)."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    probabilities = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=probabilities / probabilities.sum()))]


def _can_split(word: str) -> bool:
    return word.isalpha() and len(word) >= 4


def _partial_head(word: str, rng: np.random.Generator, stm: bool) -> Token:
    """``bec[ause]-`` (ms98) or ``(BEC-)`` (STM): only the first letters are said."""
    spoken = int(rng.integers(1, min(3, len(word) - 2) + 1))
    written = f"({word[:spoken].upper()}-)" if stm else f"{word[:spoken]}[{word[spoken:]}]-"
    return Token(written, "head", word, spoken / len(word), tag="partial")


def _partial_tail(word: str, rng: np.random.Generator) -> Token:
    """``-[be]cause``: the first letters are not said."""
    missing = int(rng.integers(1, min(3, len(word) - 2) + 1))
    written = f"-[{word[:missing]}]{word[missing:]}"
    return Token(written, "tail", word, (len(word) - missing) / len(word), tag="partial")


def _ms98_word(word: str, rng: np.random.Generator) -> Token:
    """The word itself, sometimes laughed, cut at the start, coined or reduced."""
    if word == "them" and rng.random() < RATES["reduced_them"]:
        return _speech("them_1", "em", tag="reduced")
    draw = rng.random()
    if draw < RATES["laughter_word"]:
        return Token(f"[laughter-{word}]", "laugh_word", word, tag="laughter_word")
    draw -= RATES["laughter_word"]
    if draw < RATES["partial_tail"] and _can_split(word):
        return _partial_tail(word, rng)
    draw -= RATES["partial_tail"]
    if draw < RATES["coinage"] and _can_split(word):
        coined = word + choose(rng, COINAGE_SUFFIXES)
        return _speech(f"{{{coined}}}", coined, tag="coinage")
    return _speech(word)


def markup_ms98(words: list[str], rng: np.random.Generator, turn_start: bool) -> list[Token]:
    """ms98 tokens for one spoken segment made from lower-case ``words``."""
    tokens: list[Token] = []
    if rng.random() < SEGMENT_RATES["aside"]:
        tokens.append(Token("<b_aside>", "marker", tag="aside"))
        tokens += [_speech(w) for w in choose(rng, ASIDES).split()]
        tokens.append(Token("<e_aside>", "marker", tag="aside"))
    if turn_start and rng.random() < SEGMENT_RATES["discourse"]:
        tokens += [_speech(w, tag="discourse") for w in choose(rng, DISCOURSE_MARKERS).split()]
    for word in words:
        if rng.random() < RATES["event"]:
            tokens.append(_event(*choose(rng, EVENTS, EVENT_WEIGHTS)))
        if rng.random() < RATES["hesitation"]:
            tokens.append(_speech(choose(rng, HESITATION_WORDS), tag="hesitation"))
        if _can_split(word) and rng.random() < RATES["restart"]:
            tokens.append(_partial_head(word, rng, stm=False))
        elif len(word) <= 4 and rng.random() < RATES["repetition"]:
            tokens.append(_speech(word, tag="repetition"))
        tokens.append(_ms98_word(word, rng))
    return tokens


def _stm_hesitation(rng: np.random.Generator) -> Token:
    sound = choose(rng, HESITATION_WORDS)
    if rng.random() < STM_OPTIONAL_HESITATION:
        return _speech(f"({sound.upper()})", sound, tag="hesitation")
    return _speech("(%HESITATION)", sound, tag="hesitation")


def markup_stm(words: list[str], rng: np.random.Generator, turn_start: bool) -> list[Token]:
    """Upper-case STM tokens (Hub5'00 reference conventions) for one spoken segment."""
    tokens: list[Token] = []
    if turn_start and rng.random() < SEGMENT_RATES["discourse"]:
        marker = choose(rng, DISCOURSE_MARKERS)
        tokens += [_speech(w.upper(), w, tag="discourse") for w in marker.split()]
    for word in words:
        if rng.random() < RATES["hesitation"]:
            tokens.append(_stm_hesitation(rng))
        if _can_split(word) and rng.random() < RATES["restart"]:
            tokens.append(_partial_head(word, rng, stm=True))
        elif len(word) <= 4 and rng.random() < RATES["repetition"]:
            tokens.append(_speech(word.upper(), word, tag="repetition"))
        tokens.append(_speech(word.upper(), word))
    return tokens


def unintelligible_token(sentence: str) -> Token:
    """The STM stand-in for a segment nobody can transcribe (its audio is ``sentence`` reversed)."""
    return Token(IGNORE_MARKER, "unintelligible", sentence, tag="ignore")


def backchannel(rng: np.random.Generator, part: str) -> list[Token]:
    """A listener's short answer: a word, or (training only) a laugh or a hum."""
    options = BACKCHANNELS if part == "train" else EVAL_BACKCHANNELS
    written = choose(rng, [o for o, _ in options], [w for _, w in options])
    for marker, kind in EVENTS:
        if written == marker:
            return [_event(marker, kind)]
    if part != "train":
        return [_speech(written.upper(), written, tag="backchannel")]
    return [_speech(written, tag="backchannel")]
