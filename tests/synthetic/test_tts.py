"""TTS rendering helpers: resampling, trimming, quantisation, deterministic FLAC."""

import numpy as np
import pytest
import soundfile as sf

from d2v_speech.synthetic.tts import (
    SAMPLE_RATE,
    check_tools,
    render_utterance,
    resample,
    to_int16,
    trim_silence,
    tts_command,
    write_flac_atomic,
)
from d2v_speech.synthetic.voices import Speaker

ESPEAK_SPEAKER = Speaker(123, "espeak-ng", "en-us", "m3", 50.0, 160.0, 0.5, "seen")
FLITE_SPEAKER = Speaker(456, "flite", "kal", "", 110.0, 1.1, 0.7, "seen")


def test_resample_keeps_tone_frequency_and_length():
    rate_in = 22050
    tone = np.sin(2 * np.pi * 440.0 * np.arange(rate_in) / rate_in)
    out = resample(tone, rate_in)
    assert len(out) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert np.argmax(spectrum) * SAMPLE_RATE / len(out) == pytest.approx(440.0, abs=1.0)


def test_trim_silence_keeps_loud_part_plus_padding():
    waveform = np.zeros(int(1.8 * SAMPLE_RATE))
    waveform[8000:24000] = np.sin(np.arange(16000) * 0.3)  # frames 50..149 of 160 samples
    trimmed = trim_silence(waveform, SAMPLE_RATE, threshold_db=-40.0, pad_s=0.05)
    pad = 800
    np.testing.assert_array_equal(trimmed, waveform[8000 - pad : 24000 + pad])


def test_to_int16_sets_peak_and_rejects_silence():
    samples = to_int16(np.array([0.0, -2.0, 1.0]), peak=0.5)
    np.testing.assert_array_equal(samples, [0, -16384, 8192])
    assert samples.dtype == np.int16
    with pytest.raises(ValueError, match="silent"):
        to_int16(np.zeros(3), peak=0.5)
    with pytest.raises(ValueError, match="peak"):
        to_int16(np.ones(3), peak=1.5)


def test_tts_commands_carry_speaker_settings(tmp_path):
    espeak = tts_command(ESPEAK_SPEAKER, "hello there", tmp_path / "a.wav")
    assert espeak[:9] == [
        "espeak-ng",
        "-v",
        "en-us+m3",
        "-p",
        "50",
        "-s",
        "160",
        "-w",
        str(tmp_path / "a.wav"),
    ]
    flite = tts_command(FLITE_SPEAKER, "hello there", tmp_path / "b.wav")
    assert "duration_stretch=1.1" in flite and "int_f0_target_mean=110.0" in flite
    assert flite[flite.index("-voice") + 1] == "kal"
    with pytest.raises(ValueError, match="unknown TTS engine"):
        tts_command(
            Speaker(1, "festival", "x", "", 1.0, 1.0, 0.5, "seen"), "hi", tmp_path / "c.wav"
        )


def test_check_tools_reports_both_engines():
    assert set(check_tools()) == {"espeak-ng", "flite"}


@pytest.mark.parametrize("speaker", [ESPEAK_SPEAKER, FLITE_SPEAKER])
@pytest.mark.parametrize("degraded", [False, True])
def test_render_utterance_is_deterministic_at_speaker_gain(speaker, degraded):
    text = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"
    first = render_utterance(speaker, text, degraded, np.random.default_rng(0))
    second = render_utterance(speaker, text, degraded, np.random.default_rng(0))
    np.testing.assert_array_equal(first, second)
    assert np.max(np.abs(first.astype(np.int32))) == round(speaker.gain * 32767)
    # Nine words at roughly 0.2-0.45 s per word.
    assert 1.5 < len(first) / SAMPLE_RATE < 4.5


def test_write_flac_atomic_is_byte_identical_and_leaves_no_temporary(tmp_path):
    samples = (np.sin(np.arange(16000) * 0.05) * 10000).astype(np.int16)
    write_flac_atomic(tmp_path / "a" / "x.flac", samples)
    write_flac_atomic(tmp_path / "b" / "x.flac", samples)
    assert (tmp_path / "a" / "x.flac").read_bytes() == (tmp_path / "b" / "x.flac").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.flac"]
    decoded, rate = sf.read(tmp_path / "a" / "x.flac", dtype="int16")
    assert rate == SAMPLE_RATE
    np.testing.assert_array_equal(decoded, samples)
