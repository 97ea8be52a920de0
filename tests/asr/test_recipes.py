"""Smoke test of recipes/LibriSpeech/finetune.py and evaluate.py on a tiny generated corpus."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import micro_config
from hyperpyyaml import load_hyperpyyaml

from d2v_speech.training.finetune_setup import apply_split_settings
from d2v_speech.training.recipe_yaml import expand_recipe_yaml

REPO = Path(__file__).resolve().parents[2]


def run(args, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a run that ignores its update limit fails instead of hanging
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_finetune_then_evaluate(tiny_corpus, tmp_path):
    preset = tmp_path / "micro.yaml"
    preset.write_text(yaml.safe_dump(micro_config().to_dict()))
    out = tmp_path / "ft"
    run(
        [
            REPO / "recipes/LibriSpeech/finetune.py",
            REPO / "hparams/tiny/finetune_ctc.yaml",
            "--pretrained=none",
            "--freeze_feature_encoder=False",
            "--train_split=10m",
            "--subset_10m=3",
            f"--data_folder={tiny_corpus}",
            f"--model_preset={preset}",
            f"--output_folder={out}",
            "--max_update=4",  # the YAML limit (split settings overridden), not the run option
            "--updates_per_epoch=2",
            "--dev_loss_interval=2",
            "--log_interval=1",
            "--num_workers=0",
            "--noprogressbar",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["info"]["train_split"] == "10m" and results["info"]["subset_10m"] == 3
    assert results["info"]["pretrained"] == "none"
    assert set(results["sets"]) == {"test-clean", "test-other"}
    steps = [json.loads(line) for line in (out / "train_steps.jsonl").read_text().splitlines()]
    assert [r["update"] for r in steps if "dev_subset_nats_per_char" in r] == [1, 2, 4]
    assert [r["epoch"] for r in steps if "valid_WER" in r] == [1, 2]
    # the tiny YAML keeps (and scores) the checkpoint with the lowest dev loss, plus the newest
    kept = [yaml.safe_load(f.read_text()) for f in (out / "save").glob("CKPT+*/CKPT.yaml")]
    best = min(r["valid_nats_per_char"] for r in steps if "valid_nats_per_char" in r)
    assert any(ckpt["nats_per_char"] == pytest.approx(best) for ckpt in kept)
    assert max(ckpt["updates"] for ckpt in kept) == 4
    assert (out / "training_curves.png").stat().st_size > 0
    prepared = json.loads((out / "prepared" / "prepare_options.json").read_text())
    assert prepared["train_10m.csv"]["subsets"] == ["1h/3"]

    evaluation = tmp_path / "eval"
    extra_csv = out / "prepared" / "dev-clean.csv"
    printed = run(
        [
            REPO / "recipes/LibriSpeech/evaluate.py",
            out,
            f"--data_folder={tiny_corpus}",
            "--test_splits",
            "test-clean",
            "--test_csv",
            extra_csv,
            f"--output_folder={evaluation}",
        ]
    ).stdout
    assert "test-clean: WER" in printed and "dev-clean: WER" in printed
    scored = json.loads((evaluation / "results.json").read_text())
    assert scored["info"]["subset_10m"] == 3 and scored["info"]["decoder"] == "greedy"
    # the same model and decoder give the same test-clean numbers as at the end of training
    assert scored["sets"]["test-clean"] == results["sets"]["test-clean"]
    with open(evaluation / "hyp_dev-clean.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    with open(extra_csv, encoding="utf-8") as handle:
        assert sorted(r["ID"] for r in rows) == sorted(r["ID"] for r in csv.DictReader(handle))


@pytest.mark.parametrize(
    "hparams_file", ["hparams/finetune_ctc.yaml", "hparams/tiny/finetune_ctc.yaml"]
)
@pytest.mark.parametrize("split", ["10m", "1h", "10h", "100h"])
def test_yaml_loads_for_every_split_with_the_fork_schedule(hparams_file, split, tmp_path):
    overrides = apply_split_settings(
        REPO / hparams_file,
        {"train_split": split, "pretrained": "none", "output_folder": str(tmp_path)},
    )
    hparams = load_hyperpyyaml(expand_recipe_yaml(REPO / hparams_file), overrides)
    assert hparams["optimizer_step_limit"] == hparams["max_update"]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule, total, lr = hparams["lr_scheduler"], hparams["max_update"], hparams["lr"]
    if "tiny" in hparams_file:
        schedule(optimizer, total // 2)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)  # constant after warm-up
        return
    # fairseq tri_stage, phase ratios 0.1 / 0.4 / 0.5: 1 % of peak -> peak -> 5 % of peak
    expected = {0: 0.01 * lr, total // 10: lr, total // 2 - 1: lr, total: 0.05 * lr}
    for update, value in expected.items():
        schedule(optimizer, update)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(value)
    fork = {"10m": (5e-5, 13000, 10000), "1h": (5e-5, 13000, 10000), "10h": (5e-5, 20000, 10000)}
    fork["100h"] = (3e-5, 80000, 0)
    assert (lr, total, hparams["freeze_transformer_updates"]) == fork[split]
