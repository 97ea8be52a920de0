"""Deterministic acoustic degradations for the "other" sets of the embedded corpora.

The mini Switchboard's telephone band and line noise use :func:`band_limit` and
:func:`colored_noise`; the aqc augmentation (``d2v_speech.augment``) reuses the room model.

Every function takes its randomness from a ``numpy.random.Generator`` the caller seeds per
utterance, so the same seed gives the same samples regardless of process scheduling.
Signals are 1-D float64 arrays ``(T,)``.
"""

import math

import numpy as np
from scipy import signal

RT60_RANGE_S = (0.3, 0.8)
# Direct-to-reverberant ratio of a talker a few metres from the microphone in a living room or
# office (0 dB at the critical distance). Without it, a noise tail as loud per sample as the direct
# path gives -25 to -30 dB: no room of this RT60 is large enough for that.
DRR_RANGE_DB = (-5.0, 5.0)
SNR_RANGE_DB = (10.0, 20.0)
NOISE_EXPONENT_RANGE = (0.0, 2.0)
BAND_LOW_RANGE_HZ = (150.0, 400.0)
BAND_HIGH_RANGE_HZ = (3000.0, 4500.0)
# ln(1000): amplitude falls by 60 dB (a factor 1000) over one RT60.
_LN_60DB = math.log(1000.0)


def room_impulse_response(
    rng: np.random.Generator, sample_rate: int, rt60: float, drr_db: float
) -> np.ndarray:
    """Synthetic unit-energy room impulse response ``(L,)``, ``L = rt60 * sample_rate``.

    Sample 0 is the direct path; the rest is Gaussian noise under the envelope
    ``exp(-ln(1000) t / rt60)``, so that its energy falls 60 dB in ``rt60`` seconds (Sabine's
    definition of reverberation time), scaled so that direct energy / tail energy is ``drr_db``
    (the direct-to-reverberant ratio).
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    length = max(2, int(round(rt60 * sample_rate)))
    time = np.arange(length) / sample_rate
    response = rng.standard_normal(length) * np.exp(-_LN_60DB * time / rt60)
    response[0] = 0.0
    response *= math.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(response**2))
    response[0] = 1.0
    return response / np.sqrt(np.sum(response**2))


def reverberate(waveform: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """Convolve ``(T,)`` with ``(L,)`` and keep the first T samples (duration unchanged)."""
    return signal.fftconvolve(waveform, impulse_response)[: len(waveform)]


def colored_noise(rng: np.random.Generator, num_samples: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise ``(T,)`` with power spectrum ``1 / f**exponent`` (0: white, 1: pink)."""
    if num_samples < 2:
        raise ValueError(f"need at least 2 samples of noise, got {num_samples}")
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequency = np.arange(len(spectrum), dtype=np.float64)
    frequency[0] = 1.0
    noise = np.fft.irfft(spectrum / frequency ** (exponent / 2.0), n=num_samples)
    return noise / np.sqrt(np.mean(noise**2))


def add_noise_at_snr(waveform: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``waveform + g * noise`` with g chosen so that ``10 log10(P_signal / P_noise) = snr_db``."""
    if waveform.shape != noise.shape:
        raise ValueError(f"waveform {waveform.shape} and noise {noise.shape} differ in shape")
    signal_power = np.mean(waveform**2)
    noise_power = np.mean(noise**2)
    if noise_power == 0:
        raise ValueError("noise is silent; cannot reach a finite SNR")
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return waveform + scale * noise


def band_limit(waveform: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """4th-order Butterworth band-pass (a telephone-like channel)."""
    if not 0 < low_hz < high_hz < sample_rate / 2:
        raise ValueError(f"need 0 < low_hz < high_hz < {sample_rate / 2}, got {low_hz}, {high_hz}")
    sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, waveform)


def degrade(
    waveform: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """Reverberation, then coloured background noise, then band-limiting, with drawn parameters.

    Returns the degraded ``(T,)`` signal and the parameters used (for the manifest).
    """
    params = {
        "rt60_s": float(rng.uniform(*RT60_RANGE_S)),
        "snr_db": float(rng.uniform(*SNR_RANGE_DB)),
        "noise_exponent": float(rng.uniform(*NOISE_EXPONENT_RANGE)),
        "low_hz": float(rng.uniform(*BAND_LOW_RANGE_HZ)),
        "high_hz": float(rng.uniform(*BAND_HIGH_RANGE_HZ)),
        "drr_db": float(rng.uniform(*DRR_RANGE_DB)),
    }
    response = room_impulse_response(rng, sample_rate, params["rt60_s"], params["drr_db"])
    reverberant = reverberate(waveform, response)
    noise = colored_noise(rng, len(waveform), params["noise_exponent"])
    noisy = add_noise_at_snr(reverberant, noise, params["snr_db"])
    return band_limit(noisy, sample_rate, params["low_hz"], params["high_hz"]), params
