"""`compile_transformer_layers: True` in a recipe: the run compiles its layers (student and EMA
teacher) and logs the same losses as the eager run."""

from __future__ import annotations

import json

import pytest


def losses(folder) -> list[float]:
    lines = (folder / "train_steps.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.slow
def test_compiled_recipe_logs_the_eager_losses(tmp_path, recipe_command, run_recipe):
    options = {"optimizer_step_limit": 3, "max_batch_utterances": 2}
    run_recipe(recipe_command(tmp_path / "eager", **options), timeout=300)
    result = run_recipe(
        recipe_command(tmp_path / "compiled", compile_transformer_layers="True", **options),
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert "4 Transformer layers compiled" in log  # 2 student, 2 teacher
    assert "first update with compilation:" in log  # its time is reported
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert len(eager) == 3 and len(compiled) == 3
    assert max(abs(a - b) for a, b in zip(eager, compiled, strict=True)) < 1e-4 * abs(eager[0])
