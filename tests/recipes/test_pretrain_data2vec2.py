"""The 2.0-engine recipes (tiny data2vec2 and aqc2 YAMLs, micro model with ALiBi) end to end:
precomputed clone masks reach the objective, and a run killed after a checkpoint and re-run ends
exactly like an uninterrupted one (model, decoder, quantizer, teacher, optimiser, losses)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO_ROOT
from test_pretrain_resume import (
    assert_same_state,
    final_checkpoint,
    losses_per_update,
    run_and_kill,
)

NUM_UPDATES = 4


@pytest.mark.slow
@pytest.mark.parametrize("yaml_name", ["data2vec2", "aqc2"])
def test_v2_recipe_resumes_exactly_after_a_kill(
    yaml_name, tmp_path, recipe_command, run_recipe, spawn_recipe, micro_preset
):
    hparams = REPO_ROOT / "hparams" / "tiny" / f"{yaml_name}.yaml"
    options = {
        "optimizer_step_limit": NUM_UPDATES,
        "ckpt_interval_steps": 2,
        "model_preset": micro_preset(alibi=True),
        "max_batch_utterances": 2,
    }
    reference_dir = tmp_path / "uninterrupted"
    run_recipe(recipe_command(reference_dir, hparams=hparams, **options), timeout=300)
    killed_dir = tmp_path / "killed"
    command = recipe_command(killed_dir, hparams=hparams, **options)
    run_and_kill(spawn_recipe, command, killed_dir, lambda new, update: bool(new), 0.05)
    run_recipe(command, timeout=300)

    reference = torch.load(
        final_checkpoint(reference_dir / "save") / "objective.ckpt", weights_only=False
    )
    resumed = torch.load(
        final_checkpoint(killed_dir / "save") / "objective.ckpt", weights_only=False
    )
    assert_same_state(reference, resumed, yaml_name)
    assert "model.encoder.alibi_scale" in reference and "decoder.proj.weight" in reference
    assert reference["_extra_state"]["teacher"]["num_updates"] == NUM_UPDATES
    assert losses_per_update(killed_dir) == pytest.approx(
        losses_per_update(reference_dir), rel=1e-6
    )
    resumed_updates = [
        json.loads(line)["update"]
        for line in (killed_dir / "train_steps.jsonl").open()
        if '"loss"' in line
    ]
    assert resumed_updates == sorted(set(resumed_updates)), "an update was logged twice"
    records = [json.loads(line) for line in (reference_dir / "train_steps.jsonl").open()]
    fractions = [r["masked_fraction"] for r in records if "masked_fraction" in r]
    assert fractions and all(0.45 < f <= 0.5 for f in fractions)
