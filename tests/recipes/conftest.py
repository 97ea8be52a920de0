"""Shared fixtures for the recipe tests: a tiny corpus, a micro model preset, recipe commands.

The recipe runs as a subprocess on one thread: single-threaded CPU kernels are bitwise
reproducible, which the exact-resume and DDP comparisons need, and the machine has two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from d2v_speech.synthetic.librispeech.generate import generate_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE = REPO_ROOT / "recipes" / "LibriSpeech" / "pretrain.py"
AQC_YAML = REPO_ROOT / "hparams" / "tiny" / "aqc.yaml"
CORPUS_HOURS = 0.02  # 15 training utterances (2-10 s), 4 validation ones
CORPUS_SEED = 0

# the BASE conv strides at 32 channels and a 2-layer pre-LN Transformer of width 64
MICRO_MODEL = {
    "conv_layers": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2]]
    + [[32, 2, 2]],
    "conv_bias": False,
    "extractor_mode": "layer_norm",
    "embed_dim": 64,
    "num_layers": 2,
    "num_heads": 2,
    "ffn_dim": 128,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "feature_dropout": 0.0,
    "layerdrop": 0.0,
    "pos_conv_depth": 1,
    "pos_conv_kernel": 8,
    "pos_conv_groups": 4,
    "pos_conv_mask_padding": True,
    "layer_norm_first": True,
    "layer_norm_eps": 1.0e-5,
}

# 1 s crops, about 4 utterances per batch, 7 batches per epoch: an epoch ends within 8 updates
SMALL_RUN_OVERRIDES = {
    "max_crop_samples": 16000,
    "max_batch_seconds": 30,
    "num_buckets": 3,
    "log_interval": 1,
    "curves_png": "null",
}


@pytest.fixture(scope="session")
def recipe_corpus(tmp_path_factory) -> Path:
    """A tiny embedded corpus in the LibriSpeech layout (generated once per session)."""
    out = tmp_path_factory.mktemp("recipe_corpus") / "MiniLibriSpeech"
    # the v2 shape (pool = hours, clean, training voices only): small epochs, fast tests
    generate_corpus(out, hours=CORPUS_HOURS, seed=CORPUS_SEED, jobs=2, progress=False,
                    pool_hours=CORPUS_HOURS, other_pool_fraction=0.0, pool_voices=0)  # fmt: skip
    return out


@pytest.fixture(scope="session")
def micro_preset(tmp_path_factory):
    """Factory: micro model preset YAML with field overrides -> its path."""
    folder = tmp_path_factory.mktemp("presets")

    def write(**overrides) -> Path:
        values = {**MICRO_MODEL, **overrides}
        name = "micro" + "".join(f"_{k}{v}" for k, v in sorted(overrides.items())) + ".yaml"
        path = folder / name
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        return path

    return write


def single_thread_env() -> dict[str, str]:
    """The current environment with one intra-op thread per process."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def recipe_command(recipe_corpus, micro_preset):
    """Factory: the pretraining command for an output folder and extra `--key=value` options."""

    def build(output_folder: Path, hparams: Path = AQC_YAML, **options) -> list[str]:
        values = {
            "data_folder": recipe_corpus,
            "model_preset": micro_preset(),
            "output_folder": output_folder,
            "num_workers": 0,
            "noprogressbar": True,
            **SMALL_RUN_OVERRIDES,
            **options,
        }
        flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in values.items()]
        return [sys.executable, str(RECIPE), str(hparams), *flags]

    return build


@pytest.fixture(scope="session")
def spawn_recipe():
    """Function: start a command from the repository root on one thread (a Popen)."""

    def spawn(command: list[str], **popen_kwargs) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=single_thread_env(), **popen_kwargs)

    return spawn


@pytest.fixture(scope="session")
def run_recipe():
    """Function: run a command from the repository root on one thread; fail with its log tail."""

    def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=single_thread_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            log = result.stdout[-3000:] + result.stderr[-3000:]
            pytest.fail(f"{' '.join(command)} failed with code {result.returncode}:\n{log}")
        return result

    return run
