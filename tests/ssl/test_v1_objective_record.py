"""Recorded values of the data2vec 1.0 and data2vec-aqc objectives on a fixed tiny setting.

The record (``v1_objective_record.json``) holds, per objective, every returned loss term and
statistic, a gradient fingerprint (sum and sum of squares of each parameter's ``.grad``, and the
overall norm) after one backward, the same after two optimiser steps with
``after_optimizer_step`` (EMA teacher, Gumbel temperature), and the state-dict keys. It pins
the objectives' numbers across refactors: the values must not move.

Regenerate it (only when a change of numbers is intended)::

    D2V_WRITE_V1_RECORD=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest \
        tests/ssl/test_v1_objective_record.py
"""

import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch

from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.data2vec import Data2VecObjective

RECORD = Path(__file__).with_name("v1_objective_record.json")
WRITE = os.environ.get("D2V_WRITE_V1_RECORD") == "1"
ATOL, RTOL = 1e-6, 1e-5
LENGTHS = (3200, 2800, 2000)
STEPS = 2
EMA = {"ema_decay": 0.9, "ema_end_decay": 0.99, "ema_anneal_end_step": 10}


def tiny_config() -> EncoderConfig:
    return EncoderConfig(
        conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
        embed_dim=16,
        num_layers=2,
        num_heads=2,
        ffn_dim=32,
        pos_conv_depth=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
        dropout=0.1,
        attention_dropout=0.1,
        layerdrop=0.0,
    )


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = Data2VecAudioModel(tiny_config())
    common = {"average_top_k_layers": 2, "mask_prob": 0.5, "mask_length": 3, **EMA}
    if name == "data2vec":
        return Data2VecObjective(
            model, feature_penalty_weight=0.5, feature_grad_mult=0.5, **common
        ).train()
    return AQCObjective(
        model,
        latent_vars=8,
        latent_groups=2,
        latent_temperature=(2.0, 0.5, 0.9),
        final_dim=16,
        num_negatives=5,
        cluster_factor=4,
        **common,
    ).train()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean waveforms (B, S) zero padded to their lengths, a perturbed copy, lengths (B,)."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor(LENGTHS)
    wav = torch.randn(len(LENGTHS), max(LENGTHS), generator=generator)
    aug = wav + 0.3 * torch.randn(wav.shape, generator=generator)
    valid = torch.arange(wav.shape[1]) < lengths[:, None]
    return wav * valid, aug * valid, lengths


def outputs_and_grads(objective, name: str, seed: int) -> dict:
    """One forward + backward from ``seed``: every output and the gradient fingerprint.

    ``grads`` lists [sum, sum of squares] of each parameter's gradient, by sorted name.
    """
    wav, aug, lengths = batch()
    views = {"wav_aug": aug} if name == "aqc" else {}
    objective.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = objective(wav, lengths, **views)
    out["loss"].backward()
    values = {key: value.detach().double().flatten().tolist() for key, value in out.items()}
    values = {key: value[0] if len(value) == 1 else value for key, value in values.items()}
    params = dict(objective.named_parameters())
    grads = [fingerprint(params[key].grad) for key in sorted(params)]
    norm = math.sqrt(sum(grad[1] for grad in grads if grad is not None))
    return {"outputs": values, "grads": grads, "grad_norm": norm}


def fingerprint(grad: torch.Tensor | None) -> list[float] | None:
    if grad is None:
        return None
    grad = grad.double()
    return [float(grad.sum()), float(grad.square().sum())]


def state_keys_digest(objective) -> str:
    """sha256 of the sorted state-dict keys (checkpoints rely on them staying exactly so)."""
    return hashlib.sha256("\n".join(sorted(objective.state_dict())).encode()).hexdigest()


def run(name: str) -> dict:
    """Record of one objective: first step, then the step after ``STEPS`` optimiser updates."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        objective = build(name)
        optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
        first = outputs_and_grads(objective, name, seed=2)
        for update in range(1, STEPS + 1):
            outputs_and_grads(objective, name, seed=2 + update)
            optimizer.step()
            objective.after_optimizer_step(update)
        later = outputs_and_grads(objective, name, seed=10)
    finally:
        torch.set_num_threads(threads)
    return {
        "state_keys_sha256": state_keys_digest(objective),
        "first": first,
        "after_steps": later,
        "_names": sorted(key for key, _ in objective.named_parameters()),
    }


def without_names(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "_names"}


def compact(record: dict) -> dict:
    """Round floats to 8 significant digits (fp32 holds ~7) to keep the file small."""
    if isinstance(record, dict):
        return {key: compact(value) for key, value in record.items()}
    if isinstance(record, list):
        return [compact(value) for value in record]
    if isinstance(record, float):
        return float(f"{record:.8g}")
    return record


def assert_close(actual, expected, where: str, names: list[str]) -> None:
    """Recursive comparison; a gradient's position is reported by its parameter name."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), f"{where}: {sorted(actual)}"
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}/{key}", names)
    elif expected is None or isinstance(expected, str):
        assert actual == expected, f"{where}: {actual!r}"
    elif isinstance(expected, list):
        assert actual is not None and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            label = names[index] if where.endswith("/grads") else str(index)
            assert_close(a, e, f"{where}[{label}]", names)
    else:
        assert math.isclose(actual, expected, rel_tol=RTOL, abs_tol=ATOL), (
            f"{where}: {actual} != recorded {expected}"
        )


@pytest.fixture(scope="module")
def record() -> dict:
    if WRITE:
        RECORD.write_text(
            json.dumps({name: compact(without_names(run(name))) for name in ("data2vec", "aqc")})
            + "\n"
        )
    return json.loads(RECORD.read_text())


@pytest.mark.parametrize("name", ["data2vec", "aqc"])
def test_objective_matches_record(record, name):
    actual = run(name)
    assert_close(without_names(actual), record[name], name, actual["_names"])
