"""The sound of a segment's tokens: TTS words, partial-word cuts, laughs, hums, noise bursts."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from d2v_speech.synthetic.acoustics import band_limit
from d2v_speech.synthetic.switchboard.corpus_layout import SAMPLE_RATE
from d2v_speech.synthetic.switchboard.markup import Token
from d2v_speech.synthetic.tts import resample, synthesize, trim_silence
from d2v_speech.synthetic.voices import Speaker

# Levels, as fractions of full scale.
SPEECH_PEAK = 0.9  # times the speaker's gain (0.3-0.9): -30 to -20 dBFS RMS
EVENT_PEAK_RANGE = (0.5, 0.8)  # non-speech events, relative to the speaker's speech peak
# Timing, in seconds.
PIECE_GAP = (0.04, 0.12)
MIN_PARTIAL_S = 0.04
FADE_S = 0.01


def _fade(audio: np.ndarray, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Raised-cosine ramps of FADE_S at the chosen ends, so cuts do not click."""
    length = min(len(audio) // 2, int(FADE_S * SAMPLE_RATE))
    if length < 2:
        return audio
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length))
    audio = audio.copy()
    if fade_in:
        audio[:length] *= ramp
    if fade_out:
        audio[-length:] *= ramp[::-1]
    return audio


def _with_peak(audio: np.ndarray, peak: float) -> np.ndarray:
    loudest = np.max(np.abs(audio))
    if loudest == 0:
        raise ValueError("cannot scale a silent sound")
    return audio * (peak / loudest)


@functools.lru_cache(maxsize=512)
def speak(speaker: Speaker, text: str) -> np.ndarray:
    """``speaker`` saying ``text``: float64 (T,) at 8 kHz, trimmed, peak = speech level.

    Cached per process: backchannels and hesitations repeat. Callers must not modify it.
    """
    samples, rate = synthesize(speaker, text.replace("-", " "))
    audio = trim_silence(resample(samples, rate, SAMPLE_RATE), SAMPLE_RATE)
    audio = _with_peak(audio, SPEECH_PEAK * speaker.gain)
    audio.setflags(write=False)
    return audio


def _keep_part(audio: np.ndarray, keep: float, head: bool) -> np.ndarray:
    """The first (``head``) or last ``keep`` fraction of a word, at least MIN_PARTIAL_S."""
    length = max(int(MIN_PARTIAL_S * SAMPLE_RATE), int(round(keep * len(audio))))
    length = min(length, len(audio))
    part = audio[:length] if head else audio[len(audio) - length :]
    return _fade(part, fade_in=not head, fade_out=head)


def noise_burst(rng: np.random.Generator, peak: float) -> np.ndarray:
    """A knock or rustle: exponentially decaying band-limited noise, 0.12-0.35 s."""
    length = int(rng.uniform(0.12, 0.35) * SAMPLE_RATE)
    decay = rng.uniform(0.03, 0.12) * SAMPLE_RATE
    burst = rng.standard_normal(length) * np.exp(-np.arange(length) / decay)
    burst = band_limit(burst, SAMPLE_RATE, 200.0, 2500.0)
    return _fade(_with_peak(burst, peak), fade_in=False, fade_out=True)


def _laugh_envelope(length: int, rate_hz: float) -> np.ndarray:
    """Pulses at ``rate_hz``: a sin^2 bump over 60 % of each period, silence in between."""
    phase = (np.arange(length) / SAMPLE_RATE * rate_hz) % 1.0
    return np.where(phase < 0.6, np.sin(np.pi * phase / 0.6) ** 2, 0.0)


def laughter(rng: np.random.Generator, peak: float) -> np.ndarray:
    """'ha ha ha': 3-6 breathy voiced pulses at 4-6 Hz with a falling level."""
    rate = rng.uniform(4.0, 6.0)
    length = int(int(rng.integers(3, 7)) / rate * SAMPLE_RATE)
    time_s = np.arange(length) / SAMPLE_RATE
    f0 = rng.uniform(180.0, 300.0)
    voiced = sum(np.sin(2 * np.pi * k * f0 * time_s) / k for k in range(1, 5))
    breath = band_limit(rng.standard_normal(length), SAMPLE_RATE, 500.0, 2500.0)
    mix = voiced / np.max(np.abs(voiced)) + breath / np.max(np.abs(breath))
    laugh = mix * _laugh_envelope(length, rate) * np.linspace(1.0, 0.5, length)
    return _with_peak(laugh, peak)


def hum(rng: np.random.Generator, peak: float) -> np.ndarray:
    """'mm': a 0.25-0.6 s hum with a slight pitch glide and a Hann envelope."""
    length = int(rng.uniform(0.25, 0.6) * SAMPLE_RATE)
    f0 = np.linspace(rng.uniform(90.0, 220.0), rng.uniform(90.0, 220.0), length)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    return _with_peak(tone * np.hanning(length), peak)


def laughed(word_audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A word said laughing: 5 Hz tremolo plus breath on the pulses."""
    rate = rng.uniform(4.0, 6.0)
    envelope = 0.55 + 0.45 * _laugh_envelope(len(word_audio), rate)
    breath = band_limit(rng.standard_normal(len(word_audio)), SAMPLE_RATE, 500.0, 2500.0)
    breath *= 0.15 * np.max(np.abs(word_audio)) / np.max(np.abs(breath))
    return word_audio * envelope + breath * _laugh_envelope(len(word_audio), rate)


def unintelligible(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speech-like but unscorable: the utterance played backwards under some noise."""
    noise = band_limit(rng.standard_normal(len(speech)), SAMPLE_RATE, 300.0, 3000.0)
    noise *= 0.2 * np.sqrt(np.mean(speech**2) / np.mean(noise**2))
    return speech[::-1] + noise


def _runs(tokens: list[Token]) -> Iterator[list[Token]]:
    """Consecutive speech tokens grouped (one TTS call each); every other token alone."""
    run: list[Token] = []
    for token in tokens:
        if token.kind == "speech":
            run.append(token)
            continue
        if run:
            yield run
            run = []
        yield [token]
    if run:
        yield run


def _render_run(speaker: Speaker, run: list[Token], rng: np.random.Generator) -> np.ndarray | None:
    first = run[0]
    level = SPEECH_PEAK * speaker.gain
    if first.kind == "speech":
        return speak(speaker, " ".join(token.spoken for token in run))
    if first.kind in ("head", "tail"):
        return _keep_part(speak(speaker, first.spoken), first.keep, head=first.kind == "head")
    if first.kind == "laugh_word":
        return laughed(speak(speaker, first.spoken), rng)
    if first.kind == "unintelligible":
        return unintelligible(speak(speaker, first.spoken), rng)
    makers = {"noise": noise_burst, "laughter": laughter, "hum": hum}
    if first.kind in makers:
        return makers[first.kind](rng, level * rng.uniform(*EVENT_PEAK_RANGE))
    if first.kind == "marker":
        return None
    raise ValueError(f"unknown token kind {first.kind!r} for {first.written!r}")


def render_tokens(speaker: Speaker, tokens: list[Token], rng: np.random.Generator) -> np.ndarray:
    """The sound of one segment, float64 (T,) at 8 kHz: pieces joined by short gaps."""
    pieces = []
    for run in _runs(tokens):
        audio = _render_run(speaker, run, rng)
        if audio is None:
            continue
        if pieces:
            pieces.append(np.zeros(int(rng.uniform(*PIECE_GAP) * SAMPLE_RATE)))
        pieces.append(audio)
    if not pieces:
        raise ValueError(f"segment {' '.join(t.written for t in tokens)!r} has nothing to say")
    return np.concatenate(pieces)
