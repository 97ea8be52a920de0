"""One conversation's sound: turns and backchannels laid out in time, then the channels mixed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from d2v_speech.synthetic.acoustics import band_limit, colored_noise
from d2v_speech.synthetic.switchboard.corpus_layout import SAMPLE_RATE
from d2v_speech.synthetic.switchboard.markup import (
    SEGMENT_RATES,
    Token,
    backchannel,
    choose,
    markup_ms98,
    markup_stm,
    unintelligible_token,
)
from d2v_speech.synthetic.switchboard.planning import ConversationSpec
from d2v_speech.synthetic.switchboard.sounds import render_tokens

# Levels, as fractions of full scale.
BACKGROUND_RMS = {"train": (0.0015, 0.003), "swbd": (0.0015, 0.003), "callhome": (0.003, 0.006)}
TELEPHONE_BAND = {"train": (300.0, 3400.0), "swbd": (300.0, 3400.0), "callhome": (250.0, 3300.0)}
# Timing, in seconds.
LEAD_IN = (0.3, 1.2)
LEAD_OUT = (0.3, 1.0)
SEGMENT_PAUSE = (0.35, 1.0)
TURN_GAP = (0.25, 0.9)
BACKCHANNEL_MARGIN = (0.15, 0.3)
SEGMENTS_PER_TURN = ((1, 2, 3), (0.5, 0.35, 0.15))


@dataclass
class Event:
    """Sound on one channel: samples [start, stop) and the transcript tokens."""

    channel: int
    start: int
    audio: np.ndarray
    tokens: list[Token]
    ignore: bool = False

    @property
    def stop(self) -> int:
        return self.start + len(self.audio)


@dataclass
class Conversation:
    """A laid-out conversation: events on both channels and its total length in samples."""

    events: list[Event] = field(default_factory=list)
    samples: int = 0


def _seconds(rng: np.random.Generator, bounds: tuple[float, float]) -> int:
    return int(rng.uniform(*bounds) * SAMPLE_RATE)


def _talker_event(
    spec: ConversationSpec, talker: int, sentence: str, turn_start: bool, ignored: bool, rng
) -> Event:
    """One segment of the talker, starting at 0 (the caller places it)."""
    words = sentence.split()
    if ignored:
        tokens = [unintelligible_token(sentence)]
    elif spec.part == "train":
        tokens = markup_ms98(words, rng, turn_start)
    else:
        tokens = markup_stm(words, rng, turn_start)
    return Event(talker, 0, render_tokens(spec.speakers[talker], tokens, rng), tokens, ignored)


def lay_out(spec: ConversationSpec, rng: np.random.Generator) -> Conversation:
    """Turns of 1-3 segments, alternating sides, until the target length (at least 2 turns).

    Between two segments of one turn the listener may answer with a backchannel; the pause
    is then stretched so that nothing overlaps across channels. In a Hub5'00 conversation
    the first segment of turn 1 or 2, and of some later turns, is unintelligible speech
    marked IGNORE_TIME_SEGMENT_IN_SCORING.
    """
    sentences = list(spec.sentences)
    target = int(spec.target_seconds * SAMPLE_RATE)
    forced_ignore = int(rng.integers(1, 3)) if spec.part != "train" else -1
    result = Conversation()
    now = _seconds(rng, LEAD_IN)
    turn = 0
    while sentences and (now < target or turn < 2):
        talker = turn % 2
        count = int(choose(rng, *SEGMENTS_PER_TURN))
        ignore_first = turn == forced_ignore or (
            spec.part != "train" and turn > 2 and rng.random() < SEGMENT_RATES["ignore"]
        )
        for position in range(count):
            if not sentences:
                break
            ignored = ignore_first and position == 0
            event = _talker_event(spec, talker, sentences.pop(0), position == 0, ignored, rng)
            event.start = now
            result.events.append(event)
            now = event.stop
            # Past the target, the second and later turns stop at their current segment.
            if position == count - 1 or not sentences or (turn > 0 and now >= target):
                break
            if rng.random() < SEGMENT_RATES["backchannel"]:
                tokens = backchannel(rng, spec.part)
                answer = render_tokens(spec.speakers[1 - talker], tokens, rng)
                start = now + _seconds(rng, BACKCHANNEL_MARGIN)
                result.events.append(Event(1 - talker, start, answer, tokens))
                now = start + len(answer) + _seconds(rng, BACKCHANNEL_MARGIN)
            else:
                now += _seconds(rng, SEGMENT_PAUSE)
        turn += 1
        now += _seconds(rng, TURN_GAP)
    result.samples = now + _seconds(rng, LEAD_OUT)
    return result


def mix_channels(conversation: Conversation, part: str, rng: np.random.Generator) -> np.ndarray:
    """Both channels (T, 2) in [-1, 1]: events + pink background, telephone band-pass."""
    channels = np.zeros((2, conversation.samples))
    for event in conversation.events:
        channels[event.channel, event.start : event.stop] += event.audio
    low, high = TELEPHONE_BAND[part]
    for channel in channels:
        channel += colored_noise(rng, len(channel), 1.0) * rng.uniform(*BACKGROUND_RMS[part])
        channel[:] = band_limit(channel, SAMPLE_RATE, low, high)
    return np.clip(channels.T, -0.999, 0.999)
