"""Text-to-speech for the embedded corpora: espeak-ng / flite -> 16 kHz mono int16 samples -> FLAC.

The LibriSpeech-style generator writes FLAC files (:func:`render_utterance`); the mini Switchboard
takes the samples (:func:`synthesize`, :func:`trim_silence`, :func:`resample`) into its 8 kHz
conversations. Both engines are deterministic for fixed settings, all signal processing is
numpy/scipy, and libsndfile's FLAC encoder writes no time stamps, so a fixed seed gives identical
file bytes.
"""

import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from d2v_speech.synthetic.acoustics import degrade
from d2v_speech.synthetic.voices import Speaker

SAMPLE_RATE = 16000
TRIM_THRESHOLD_DB = -40.0
TRIM_FRAME_S = 0.01
TRIM_PAD_S = 0.05
REQUIRED_TOOLS = ("espeak-ng", "flite")


def check_tools() -> dict[str, str]:
    """Version line of each TTS engine; raises FileNotFoundError naming a missing one."""
    versions = {}
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            raise FileNotFoundError(
                f"'{tool}' not found on PATH; install the Debian package '{tool}'"
            )
        result = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        lines = (result.stdout + result.stderr).strip().splitlines()
        versions[tool] = next((line.strip() for line in lines if "version" in line.lower()), "")
        if not versions[tool] and lines:
            versions[tool] = lines[0].strip()
    return versions


def tts_command(speaker: Speaker, text: str, wav_path: Path) -> list[str]:
    """Command line that makes ``speaker`` say ``text`` into ``wav_path``."""
    if speaker.engine == "espeak-ng":
        voice = f"{speaker.voice}+{speaker.variant}" if speaker.variant else speaker.voice
        return [
            "espeak-ng",
            "-v",
            voice,
            "-p",
            str(int(speaker.pitch)),
            "-s",
            str(int(speaker.speed)),
            "-w",
            str(wav_path),
            text,
        ]
    if speaker.engine == "flite":
        return [
            "flite",
            "-voice",
            speaker.voice,
            "--setf",
            f"duration_stretch={speaker.speed}",
            "--setf",
            f"int_f0_target_mean={speaker.pitch}",
            "-t",
            text,
            "-o",
            str(wav_path),
        ]
    raise ValueError(f"unknown TTS engine {speaker.engine!r} (expected 'espeak-ng' or 'flite')")


def synthesize(speaker: Speaker, text: str) -> tuple[np.ndarray, int]:
    """Raw engine output: float64 samples ``(T,)`` and the engine's sample rate."""
    with tempfile.TemporaryDirectory(prefix="d2v_tts_") as workdir:
        wav_path = Path(workdir) / "tts.wav"
        result = subprocess.run(
            tts_command(speaker, text, wav_path), capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or not wav_path.exists():
            raise RuntimeError(
                f"{speaker.engine} failed for speaker {speaker.speaker_id} on {text!r}: "
                f"{result.stderr.strip()[-500:]}"
            )
        samples, sample_rate = sf.read(wav_path, dtype="float64", always_2d=False)
    if samples.ndim != 1 or samples.size == 0:
        raise RuntimeError(f"{speaker.engine} produced no mono audio for {text!r}")
    return samples, sample_rate


def resample(waveform: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling ``(T,)`` -> ``(T * rate_out / rate_in,)``."""
    if rate_in == rate_out:
        return waveform
    divisor = math.gcd(rate_in, rate_out)
    return signal.resample_poly(waveform, rate_out // divisor, rate_in // divisor)


def trim_silence(
    waveform: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    threshold_db: float = TRIM_THRESHOLD_DB,
    pad_s: float = TRIM_PAD_S,
) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``threshold_db`` below the loudest frame.

    Frames are 10 ms; ``pad_s`` of context is kept on each side of the first/last loud frame.
    """
    frame = max(1, int(TRIM_FRAME_S * sample_rate))
    num_frames = len(waveform) // frame
    if num_frames == 0:
        return waveform
    frames = waveform[: num_frames * frame].reshape(num_frames, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10.0 ** (threshold_db / 20.0))
    if loud.size == 0:
        return waveform
    pad = int(pad_s * sample_rate)
    start = max(0, loud[0] * frame - pad)
    stop = min(len(waveform), (loud[-1] + 1) * frame + pad)
    return waveform[start:stop]


def to_int16(waveform: np.ndarray, peak: float) -> np.ndarray:
    """Scale ``(T,)`` so its peak is ``peak`` of full scale and quantise to int16."""
    if not 0 < peak <= 1:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    loudest = np.max(np.abs(waveform))
    if loudest == 0:
        raise ValueError("cannot normalise a silent waveform")
    return np.round(waveform * (peak * 32767.0 / loudest)).astype(np.int16)


def render_utterance(
    speaker: Speaker, text: str, degraded: bool, rng: np.random.Generator
) -> np.ndarray:
    """int16 samples ``(T,)`` at 16 kHz of ``speaker`` saying ``text``.

    ``degraded`` adds reverberation, noise and band-limiting (the "other" conditions).
    """
    samples, rate = synthesize(speaker, text.lower())
    waveform = trim_silence(resample(samples, rate))
    if degraded:
        waveform, _ = degrade(waveform, SAMPLE_RATE, rng)
    return to_int16(waveform, speaker.gain)


def write_flac_atomic(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono FLAC via a temporary name, so a crash never leaves a partial ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.part")
    sf.write(temporary, samples, sample_rate, format="FLAC", subtype="PCM_16")
    os.replace(temporary, path)
