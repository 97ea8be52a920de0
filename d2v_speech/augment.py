"""Waveform augmentation for the data2vec-aqc student view, run per utterance in loader workers.

The official fork (``fairseq/data/audio/raw_audio_dataset.py``) composes, with
torchaudio_augmentations::

    RandomApply([Noise(min_snr=0.001, max_snr=0.7)], p=0.6)
    RandomApply([Reverb(sample_rate)], p=0.7)                 # sox reverb, random room
    RandomApply([RandomBackgroundNoise(sample_rate, musan/noise/free-sound)], p=0.8)

:class:`WaveformAugmenter` keeps that order and those probabilities, built on audiomentations:

* **Gaussian noise.** ``Noise`` adds N(0, (r * std(x))^2) with r ~ U(0.001, 0.7), i.e. an SNR of
  ``-20 log10 r`` dB: from -20 log10 0.7 = 3.1 dB to -20 log10 0.001 = 60 dB. We use that range,
  drawn uniformly in dB (``AddGaussianSNR``, the default) or, with
  ``noise_snr_sampling="uniform_amplitude"``, uniformly in r exactly as the fork does (which makes
  low SNRs much more frequent: P(SNR < 10 dB) is 0.55 there against 0.12 uniform in dB).
* **Reverberation.** With ``rir_folder``, a random real impulse response (``ApplyImpulseResponse``).
  Otherwise one of a fixed bank of synthetic RIRs built at init from ``seed``: a direct path plus
  exponentially decaying Gaussian noise with random RT60 and direct-to-reverberant ratio. The
  reverberant signal is rescaled to the input's RMS and cut to the input length.
* **Background noise.** With ``noise_folder`` (MUSAN layout, any audio under it, e.g.
  ``musan/noise/free-sound``), a random file mixed at a random SNR (``AddBackgroundNoise``);
  otherwise coloured noise with a random spectral slope (``AddColorNoise``). The default SNR range,
  0 to 15 dB, is that of the ``RandomBackgroundNoise(sample_rate, noise_dir)`` recipe the fork's
  package follows.

Determinism: every call derives its own generator from ``(seed, key)``, so the same key gives the
same output in any worker and any order. audiomentations draws from Python's ``random`` and
NumPy's global generator; they are seeded from that generator for the duration of the call and
their previous state is restored afterwards, so the caller's random streams are untouched.
"""

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from audiomentations import (
    AddBackgroundNoise,
    AddColorNoise,
    AddGaussianSNR,
    ApplyImpulseResponse,
)
from audiomentations.core.utils import find_audio_files_in_paths
from scipy.signal import fftconvolve

from d2v_speech.synthetic.acoustics import room_impulse_response

NOISE_SNR_SAMPLING = ("uniform_db", "uniform_amplitude")
FORK_NOISE_SNR_DB = (-20 * np.log10(0.7), -20 * np.log10(0.001))


def synthetic_rir(
    rt60_s: float, drr_db: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """A unit-energy room impulse response (rt60_s * sample_rate samples, float32).

    The embedded corpus's room model (`d2v_speech.synthetic.acoustics.room_impulse_response`): a
    direct path, then Gaussian noise whose energy falls by 60 dB over ``rt60_s`` seconds, with
    direct energy / tail energy = ``drr_db``.
    """
    return room_impulse_response(rng, sample_rate, rt60_s, drr_db).astype(np.float32)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def _audio_folder(folder: str | Path, what: str) -> Path:
    """Check that ``folder`` exists and holds audio files; name it in the error if not."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder does not exist: {path}")
    if not find_audio_files_in_paths(path):
        raise ValueError(f"{what} folder contains no audio files (e.g. **/*.wav): {path}")
    return path


def _check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (min, max) with min <= max, got {value!r}")
    return low, high


@contextlib.contextmanager
def _seeded_global_rngs(rng: np.random.Generator) -> Iterator[None]:
    """Seed ``random`` and ``np.random`` from ``rng``; restore their previous states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(int(rng.integers(2**63)))
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class WaveformAugmenter:
    """Noise, reverberation and background noise, each applied with its own probability.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the waveforms (and of the loaded RIR / noise files after resampling).
    noise_prob, reverb_prob, background_prob : float
        Probabilities of the three stages (the fork's 0.6, 0.7, 0.8).
    noise_snr_db : tuple of float
        (min, max) SNR of the Gaussian noise; default = the fork's Noise(0.001, 0.7) in dB.
    background_snr_db : tuple of float
        (min, max) SNR of the background noise.
    rir_folder : str or Path, optional
        Folder of real RIRs; default: a synthetic RIR bank.
    noise_folder : str or Path, optional
        Folder of background noises (searched recursively); default: coloured noise.
    seed : int
        Base seed; each call's randomness comes from (seed, key).
    noise_snr_sampling : str
        ``"uniform_db"`` or ``"uniform_amplitude"`` (the fork's distribution; see module doc).
    rt60_s, drr_db : tuple of float
        Ranges of the synthetic RIRs' RT60 (seconds) and direct-to-reverberant ratio (dB).
    num_synthetic_rirs : int
        Size of the synthetic RIR bank.

    Example
    -------
    >>> augment = WaveformAugmenter(seed=1)
    >>> wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> out = augment(wav, key=7)
    >>> out.shape, out.dtype, bool(np.array_equal(out, augment(wav, key=7)))
    ((16000,), dtype('float32'), True)
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        noise_prob: float = 0.6,
        reverb_prob: float = 0.7,
        background_prob: float = 0.8,
        noise_snr_db: tuple[float, float] = FORK_NOISE_SNR_DB,
        background_snr_db: tuple[float, float] = (0.0, 15.0),
        rir_folder: str | Path | None = None,
        noise_folder: str | Path | None = None,
        seed: int = 0,
        noise_snr_sampling: str = "uniform_db",
        rt60_s: tuple[float, float] = (0.2, 1.0),
        drr_db: tuple[float, float] = (-5.0, 10.0),
        num_synthetic_rirs: int = 32,
    ):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        probabilities = {
            "noise_prob": noise_prob,
            "reverb_prob": reverb_prob,
            "background_prob": background_prob,
        }
        for name, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if noise_snr_sampling not in NOISE_SNR_SAMPLING:
            raise ValueError(
                f"noise_snr_sampling must be one of {NOISE_SNR_SAMPLING}, "
                f"got {noise_snr_sampling!r}"
            )
        if num_synthetic_rirs < 1:
            raise ValueError(f"num_synthetic_rirs must be >= 1, got {num_synthetic_rirs}")
        self.sample_rate = sample_rate
        self.probabilities = np.array([noise_prob, reverb_prob, background_prob])
        self.noise_snr_db = _check_range("noise_snr_db", noise_snr_db)
        self.background_snr_db = _check_range("background_snr_db", background_snr_db)
        self.seed = seed
        self.noise_snr_sampling = noise_snr_sampling

        self._gaussian_noise = AddGaussianSNR(*self.noise_snr_db, p=1.0)
        self._impulse_response = None
        self.synthetic_rirs: list[np.ndarray] = []
        if rir_folder is not None:
            self._impulse_response = ApplyImpulseResponse(_audio_folder(rir_folder, "RIR"), p=1.0)
        else:
            rt60_range = _check_range("rt60_s", rt60_s)
            drr_range = _check_range("drr_db", drr_db)
            bank_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x52495242]))
            self.synthetic_rirs = [
                synthetic_rir(
                    rt60_s=bank_rng.uniform(*rt60_range),
                    drr_db=bank_rng.uniform(*drr_range),
                    sample_rate=sample_rate,
                    rng=bank_rng,
                )
                for _ in range(num_synthetic_rirs)
            ]
        if noise_folder is not None:
            self._background = AddBackgroundNoise(
                _audio_folder(noise_folder, "Background noise"), *self.background_snr_db, p=1.0
            )
        else:
            self._background = AddColorNoise(*self.background_snr_db, p=1.0)

    def __call__(self, wav: np.ndarray | torch.Tensor, key: int) -> np.ndarray | torch.Tensor:
        """Augment one mono waveform.

        Arguments
        ---------
        wav : numpy.ndarray or torch.Tensor
            (S,) float samples.
        key : int
            Non-negative identifier of this example (e.g. its dataset index or a hash of its id
            and epoch); the same key always gives the same augmentation.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            (S,) float32, the input's type (a tensor comes back on its original device).
        """
        samples = self._validated_samples(wav)
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
            raise ValueError(f"key must be a non-negative int, got {key!r}")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(key)]))
        # decided up front so one stage's randomness never shifts another stage's decision
        apply_noise, apply_reverb, apply_background = rng.random(3) < self.probabilities
        with _seeded_global_rngs(rng):
            if apply_noise:
                samples = self._add_gaussian_noise(samples, rng)
            if apply_reverb:
                samples = self._reverberate(samples, rng)
            if apply_background:
                samples = self._background(samples, self.sample_rate)
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if not np.isfinite(samples).all():
            raise FloatingPointError("augmentation produced non-finite samples")
        if isinstance(wav, torch.Tensor):
            return torch.from_numpy(samples).to(wav.device)
        return samples

    @staticmethod
    def _validated_samples(wav: np.ndarray | torch.Tensor) -> np.ndarray:
        """A float32 copy of a finite, non-empty mono waveform, or ValueError."""
        if isinstance(wav, torch.Tensor):
            if not wav.is_floating_point():
                raise ValueError(f"expected float samples, got {wav.dtype}")
            samples = wav.detach().cpu().float().numpy()
        elif isinstance(wav, np.ndarray):
            if not np.issubdtype(wav.dtype, np.floating):
                raise ValueError(f"expected float samples, got {wav.dtype}")
            samples = wav.astype(np.float32)
        else:
            raise ValueError(f"expected a numpy array or torch tensor, got {type(wav).__name__}")
        if samples.ndim != 1:
            raise ValueError(f"expected a mono waveform of shape (S,), got {samples.shape}")
        if samples.size == 0:
            raise ValueError("cannot augment empty audio")
        if not np.isfinite(samples).all():
            raise ValueError("waveform contains NaN or inf samples")
        return np.array(samples, dtype=np.float32, copy=True)

    def _add_gaussian_noise(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.noise_snr_sampling == "uniform_db":
            return self._gaussian_noise(samples, self.sample_rate)
        low_db, high_db = self.noise_snr_db
        ratio = rng.uniform(10.0 ** (-high_db / 20.0), 10.0 ** (-low_db / 20.0))
        noise = rng.standard_normal(samples.shape) * (ratio * float(np.std(samples)))
        return (samples + noise).astype(np.float32)

    def _reverberate(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self._impulse_response is not None:
            wet = self._impulse_response(samples, self.sample_rate)
        else:
            rir = self.synthetic_rirs[int(rng.integers(len(self.synthetic_rirs)))]
            wet = fftconvolve(samples, rir)[: samples.shape[0]]
        wet_rms = _rms(wet)
        # keep the input level: real-RIR output is peak-normalised, synthetic RIRs change it too
        gain = _rms(samples) / wet_rms if wet_rms > 0 else 0.0
        return (wet * gain).astype(np.float32)
