"""Helpers shared by the fairseq / s3prl export tests: small encoders, trained-looking
checkpoints (student, EMA teacher, aqc heads all different), waveforms and the independent
fairseq key table of tests/fairseq_layout.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from d2v_speech.checkpoints import LoadedCheckpoint, load_objective_state
from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.data2vec import Data2VecObjective

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "MiniLibriSpeech"
#: BASE strides (320x, 400-sample receptive field) at toy widths, as SUPERB needs 320
CONV_320 = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2


def _load_fairseq_layout():
    spec = importlib.util.spec_from_file_location(
        "fairseq_layout", REPO / "tests" / "fairseq_layout.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fairseq_layout = _load_fairseq_layout()


def small_config(**overrides) -> EncoderConfig:
    """A 3-layer post-LN encoder of width 32 with 320x conv strides."""
    values = {
        "conv_layers": CONV_320,
        "embed_dim": 32,
        "num_layers": 3,
        "num_heads": 4,
        "ffn_dim": 64,
        "pos_conv_depth": 2,
        "pos_conv_kernel": 5,
        "pos_conv_groups": 4,
        "layerdrop": 0.0,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter off its initial value (LayerNorms included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.1 * noise)
    return module


def trained_checkpoint(config: EncoderConfig, aqc: bool = True, seed: int = 0) -> LoadedCheckpoint:
    """Our recipe's objective state as `load_checkpoint` gives it: teacher = student + 1."""
    torch.manual_seed(seed)
    model = Data2VecAudioModel(config)
    if aqc:
        objective = AQCObjective(
            model, latent_vars=8, latent_groups=2, final_dim=8, average_top_k_layers=2
        )
        objective.quantizer.set_num_updates(1000)
    else:
        objective = Data2VecObjective(model, average_top_k_layers=2)
    perturbed(objective, seed)
    student = model.encoder.state_dict()
    objective.teacher.model.load_state_dict({k: v + 1.0 for k, v in student.items()})
    objective.teacher.num_updates = 37
    return load_objective_state(objective.state_dict(), config, normalize=True)


def speech_waveform(num_samples: int = 24000) -> torch.Tensor:
    """(S,) float32 at 16 kHz: an utterance of the embedded corpus (data/MiniLibriSpeech, made
    by `python -m d2v_speech.synthetic.librispeech`) when there is one, else a vowel-like signal."""
    files = sorted(CORPUS.glob("test-clean/*/*/*.flac"))[:1]
    if files:
        samples, _ = sf.read(files[0], dtype="float32")
    else:
        time = np.arange(num_samples) / 16000.0
        pitch = 120.0 + 30.0 * np.sin(2 * np.pi * 1.5 * time)
        phase = 2 * np.pi * np.cumsum(pitch) / 16000.0
        samples = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.hanning(num_samples)
        samples = samples + 0.01 * np.random.default_rng(0).standard_normal(num_samples)
    return torch.from_numpy(np.resize(np.asarray(samples, dtype=np.float32), num_samples))
