"""Acoustic degradations checked against their defining formulas (SNR, RT60, Butterworth, 1/f)."""

import numpy as np
import pytest

from d2v_speech.synthetic.acoustics import (
    BAND_HIGH_RANGE_HZ,
    BAND_LOW_RANGE_HZ,
    DRR_RANGE_DB,
    RT60_RANGE_S,
    SNR_RANGE_DB,
    add_noise_at_snr,
    band_limit,
    colored_noise,
    degrade,
    reverberate,
    room_impulse_response,
)

RATE = 16000


def _tone(frequency: float, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * frequency * np.arange(int(seconds * RATE)) / RATE)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 17.5])
def test_add_noise_reaches_requested_snr(snr_db):
    rng = np.random.default_rng(1)
    speech = rng.standard_normal(4000) * 0.3
    noise = rng.standard_normal(4000) * 5.0
    noisy = add_noise_at_snr(speech, noise, snr_db)
    added = noisy - speech
    measured = 10 * np.log10(np.mean(speech**2) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=1e-9)


def test_add_noise_rejects_shape_mismatch_and_silence():
    with pytest.raises(ValueError, match="differ in shape"):
        add_noise_at_snr(np.ones(4), np.ones(5), 10.0)
    with pytest.raises(ValueError, match="silent"):
        add_noise_at_snr(np.ones(4), np.zeros(4), 10.0)


def test_band_limit_passes_speech_band_and_cuts_outside():
    def gain_db(frequency):
        out = band_limit(_tone(frequency), RATE, 300.0, 3400.0)[RATE // 2 :]
        return 20 * np.log10(np.std(out) / np.std(_tone(frequency)[RATE // 2 :]))

    assert gain_db(1000.0) == pytest.approx(0.0, abs=0.5)
    assert gain_db(60.0) < -25.0
    assert gain_db(7000.0) < -25.0


def test_band_limit_rejects_bad_edges():
    with pytest.raises(ValueError, match="low_hz < high_hz"):
        band_limit(np.ones(100), RATE, 3000.0, 300.0)


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_impulse_response_decays_60_db_in_rt60(rt60):
    response = room_impulse_response(np.random.default_rng(3), RATE, rt60, drr_db=0.0)
    assert np.sum(response**2) == pytest.approx(1.0)
    # Schroeder backward integration of the tail; T20 (-5 to -25 dB) extrapolated to 60 dB.
    energy = np.cumsum(response[:0:-1] ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0])
    t5 = np.argmax(decay_db <= -5) / RATE
    t25 = np.argmax(decay_db <= -25) / RATE
    assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.15)


@pytest.mark.parametrize("drr_db", [-5.0, 0.0, 5.0])
def test_impulse_response_has_the_requested_direct_to_reverberant_ratio(drr_db):
    response = room_impulse_response(np.random.default_rng(6), RATE, 0.5, drr_db)
    assert len(response) == RATE // 2
    direct, tail = response[0] ** 2, np.sum(response[1:] ** 2)
    assert 10 * np.log10(direct / tail) == pytest.approx(drr_db, abs=1e-9)


def test_impulse_response_rejects_non_positive_rt60():
    with pytest.raises(ValueError, match="rt60 must be positive"):
        room_impulse_response(np.random.default_rng(0), RATE, 0.0, 0.0)


def test_reverberate_keeps_length_and_equals_direct_convolution():
    rng = np.random.default_rng(4)
    dry, response = rng.standard_normal(300), rng.standard_normal(40)
    naive = np.array(
        [sum(dry[t - k] * response[k] for k in range(40) if t - k >= 0) for t in range(300)]
    )
    np.testing.assert_allclose(reverberate(dry, response), naive, atol=1e-9)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_has_unit_rms_and_requested_slope(exponent):
    noise = colored_noise(np.random.default_rng(5), 2**16, exponent)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(noise)) ** 2
    bins = np.unique(np.geomspace(10, len(power) - 1, 40).astype(int))
    band_power = [np.mean(power[low:high]) for low, high in zip(bins[:-1], bins[1:])]
    centres = np.sqrt(bins[:-1] * bins[1:])
    slope = np.polyfit(np.log(centres), np.log(band_power), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


def test_degrade_is_deterministic_for_a_seed_and_params_in_range():
    speech = _tone(440.0) * np.hanning(RATE)
    first, params = degrade(speech, RATE, np.random.default_rng(7))
    second, _ = degrade(speech, RATE, np.random.default_rng(7))
    other, _ = degrade(speech, RATE, np.random.default_rng(8))
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)
    assert first.shape == speech.shape
    assert RT60_RANGE_S[0] <= params["rt60_s"] <= RT60_RANGE_S[1]
    assert SNR_RANGE_DB[0] <= params["snr_db"] <= SNR_RANGE_DB[1]
    assert BAND_LOW_RANGE_HZ[0] <= params["low_hz"] <= BAND_LOW_RANGE_HZ[1]
    assert BAND_HIGH_RANGE_HZ[0] <= params["high_hz"] <= BAND_HIGH_RANGE_HZ[1]
    assert DRR_RANGE_DB[0] <= params["drr_db"] <= DRR_RANGE_DB[1]
