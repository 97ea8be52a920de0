"""WaveformAugmenter: SNRs, reverberation and background noise checked against direct formulas."""

import random

import numpy as np
import pytest
import soundfile as sf
import torch

from d2v_speech.augment import FORK_NOISE_SNR_DB, WaveformAugmenter, synthetic_rir

SR = 16000


def speech_like(num_samples: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.05 * rng.standard_normal(num_samples)).astype(np.float32)


def only(stage: str, **kwargs) -> WaveformAugmenter:
    probabilities = {"noise_prob": 0.0, "reverb_prob": 0.0, "background_prob": 0.0}
    probabilities[stage] = 1.0
    return WaveformAugmenter(sample_rate=SR, **probabilities, **kwargs)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    residual = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(residual**2))


def test_fork_noise_range_in_db():
    # Noise(min_snr=0.001, max_snr=0.7) scales the noise std by r: SNR = -20 log10 r
    assert FORK_NOISE_SNR_DB == pytest.approx((3.0980, 60.0), abs=1e-3)


@pytest.mark.parametrize(
    ("sampling", "low_fraction_range"),
    [("uniform_db", (0.04, 0.22)), ("uniform_amplitude", (0.45, 0.65))],
)
def test_gaussian_noise_snr_range_and_distribution(sampling, low_fraction_range):
    augment = only("noise_prob", noise_snr_sampling=sampling)
    clean = speech_like(1600)
    snrs = np.array([snr_db(clean, augment(clean, key)) for key in range(200)])
    assert snrs.min() > FORK_NOISE_SNR_DB[0] - 0.5 and snrs.max() < FORK_NOISE_SNR_DB[1] + 0.5
    # P(SNR < 10 dB): 6.9/56.9 = 0.12 uniform in dB; (0.7 - 0.316)/0.699 = 0.55 uniform in r
    low_fraction = float(np.mean(snrs < 10.0))
    assert low_fraction_range[0] < low_fraction < low_fraction_range[1]


def test_synthetic_rir_decay_and_direct_to_reverberant_ratio():
    rir = synthetic_rir(rt60_s=0.5, drr_db=4.0, sample_rate=SR, rng=np.random.default_rng(0))
    assert rir.shape == (8000,) and rir.dtype == np.float32
    assert np.sum(rir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
    tail_energy = np.sum(rir[1:].astype(np.float64) ** 2)
    assert 10 * np.log10(rir[0] ** 2 / tail_energy) == pytest.approx(4.0, abs=1e-3)
    # Schroeder backward integration; T30 (-5 to -35 dB) extrapolated to 60 dB
    decay = np.cumsum(rir[1:].astype(np.float64)[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(decay / decay[0])
    t5, t35 = np.argmax(decay_db <= -5) / SR, np.argmax(decay_db <= -35) / SR
    assert 2 * (t35 - t5) == pytest.approx(0.5, rel=0.1)


def test_synthetic_reverb_is_a_bank_convolution_at_input_level():
    augment = only("reverb_prob", num_synthetic_rirs=4)
    clean = speech_like(2000)
    out = augment(clean, key=11)
    matches = []
    for rir in augment.synthetic_rirs:
        wet = np.convolve(clean.astype(np.float64), rir.astype(np.float64))[: clean.size]
        wet *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(wet**2))
        matches.append(np.allclose(out, wet, atol=1e-4))
    assert sum(matches) == 1


def test_rir_folder_is_used(tmp_path):
    rir = np.zeros(400, dtype=np.float32)
    rir[0], rir[300] = 0.5, 0.25
    sf.write(tmp_path / "room.wav", rir, SR)
    augment = only("reverb_prob", rir_folder=tmp_path)
    clean = speech_like(2000)
    out = augment(clean, key=0)
    wet = np.convolve(clean.astype(np.float64), rir.astype(np.float64))[: clean.size]
    wet *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(wet**2))
    np.testing.assert_allclose(out, wet, atol=2e-4)


def test_background_noise_folder_in_musan_layout(tmp_path):
    folder = tmp_path / "musan" / "noise" / "free-sound"
    folder.mkdir(parents=True)
    t = np.arange(2 * SR) / SR
    sf.write(
        folder / "noise-free-sound-0000.wav",
        (0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32),
        SR,
    )
    augment = only("background_prob", noise_folder=tmp_path / "musan" / "noise")
    clean = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 0.1
    for key in range(5):
        out = augment(clean, key)
        assert 0.0 - 0.01 <= snr_db(clean, out) <= 15.0 + 0.01
        spectrum = np.abs(np.fft.rfft(out - clean))
        assert np.fft.rfftfreq(clean.size, 1 / SR)[np.argmax(spectrum)] == pytest.approx(
            1000, abs=8
        )


def test_coloured_noise_fallback_snr():
    augment = only("background_prob")
    clean = speech_like(3000)
    snrs = [snr_db(clean, augment(clean, key)) for key in range(20)]
    assert min(snrs) > -0.01 and max(snrs) < 15.01


def test_deterministic_per_key_and_order_independent():
    clean = speech_like(3000)
    first = WaveformAugmenter(seed=3)
    outputs = {key: first(clean, key) for key in (5, 1, 9)}
    second = WaveformAugmenter(seed=3)
    for key in (9, 5, 1):
        np.testing.assert_array_equal(second(clean, key), outputs[key])
    assert not np.array_equal(outputs[5], outputs[1])
    assert not np.array_equal(WaveformAugmenter(seed=4)(clean, 5), outputs[5])


def test_caller_random_state_is_restored():
    augment = WaveformAugmenter(seed=0, noise_prob=1.0, background_prob=1.0)
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    augment(speech_like(1000), key=2)
    assert (random.random(), np.random.random()) == expected


def test_tensor_in_tensor_out_and_silence_stays_finite():
    augment = WaveformAugmenter(noise_prob=1.0, reverb_prob=1.0, background_prob=1.0)
    clean = speech_like(2000)
    out = augment(torch.from_numpy(clean).double(), key=4)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), augment(clean, key=4))
    silent = augment(np.zeros(1000, dtype=np.float32), key=1)
    assert silent.shape == (1000,) and np.isfinite(silent).all()


@pytest.mark.parametrize(
    ("wav", "message"),
    [
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN or inf"),
        (np.array([0.1, np.inf], dtype=np.float32), "NaN or inf"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((2, 100), dtype=np.float32), "mono"),
        (np.zeros(100, dtype=np.int16), "float samples"),
        ([0.0, 1.0], "numpy array or torch tensor"),
    ],
)
def test_bad_waveforms_raise(wav, message):
    with pytest.raises(ValueError, match=message):
        WaveformAugmenter()(wav, key=0)


def test_bad_settings_raise(tmp_path):
    with pytest.raises(ValueError, match="key"):
        WaveformAugmenter()(speech_like(100), key=-1)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        WaveformAugmenter(rir_folder=tmp_path / "does-not-exist")
    (tmp_path / "empty-noise").mkdir()
    with pytest.raises(ValueError, match="empty-noise"):
        WaveformAugmenter(noise_folder=tmp_path / "empty-noise")
    with pytest.raises(ValueError, match="reverb_prob"):
        WaveformAugmenter(reverb_prob=1.5)
    with pytest.raises(ValueError, match="background_snr_db"):
        WaveformAugmenter(background_snr_db=(20.0, 5.0))
    with pytest.raises(ValueError, match="noise_snr_sampling"):
        WaveformAugmenter(noise_snr_sampling="gaussian")
