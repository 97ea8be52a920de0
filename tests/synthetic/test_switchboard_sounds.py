"""The sounds of mini Switchboard tokens: partial-word cuts and the shapes of non-speech events."""

import numpy as np
import pytest

from d2v_speech.synthetic.switchboard.markup import Token
from d2v_speech.synthetic.switchboard.sounds import hum, laughter, noise_burst, render_tokens, speak
from d2v_speech.synthetic.voices import Speaker

SR = 8000
ESPEAK = Speaker(901, "espeak-ng", "en-us", "m3", 50.0, 160.0, 0.6, "seen")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def test_partial_word_keeps_only_the_spoken_share():
    full = speak(ESPEAK, "because")
    rng = np.random.default_rng(0)
    head = render_tokens(ESPEAK, [Token("bec[ause]-", "head", "because", 3 / 7)], rng)
    tail = render_tokens(ESPEAK, [Token("-[be]cause", "tail", "because", 5 / 7)], rng)
    assert len(head) == round(3 / 7 * len(full)) and len(tail) == round(5 / 7 * len(full))
    fade = int(0.01 * SR)
    np.testing.assert_array_equal(head[: len(head) - fade], full[: len(head) - fade])
    np.testing.assert_array_equal(tail[fade:], full[len(full) - len(tail) + fade :])


def _dominant_hz(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * SR / len(signal))


def _dominant_hz_of(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal, n=8 * len(signal)))
    return float(np.argmax(spectrum[1:]) + 1) * rate / (8 * len(signal))


def test_event_sounds_have_their_defining_shape():
    rng = np.random.default_rng(5)
    burst = noise_burst(rng, 0.3)
    half = len(burst) // 2
    assert np.max(np.abs(burst)) == pytest.approx(0.3)
    assert _rms(burst[:half]) > 3 * _rms(burst[half:]), "a burst decays"
    hummed = hum(rng, 0.2)
    assert 80.0 < _dominant_hz(hummed) < 240.0, "a hum is voiced at speaking pitch"
    laugh = laughter(rng, 0.3)
    frame = SR // 100
    envelope = np.sqrt(np.mean(laugh[: len(laugh) // frame * frame].reshape(-1, frame) ** 2, 1))
    assert 4.0 <= _dominant_hz_of(envelope - envelope.mean(), 100) <= 6.0, "pulses at 4-6 Hz"
    loud = (envelope > 0.2 * envelope.max()).astype(int)
    pulses = int(np.sum(np.diff(loud) == 1) + loud[0])
    assert 3 <= pulses <= 6, "3-6 'ha's"
