"""Smoke test of recipes/Switchboard/finetune.py on a tiny generated mini Switchboard."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import micro_config

from d2v_speech.corpora.switchboard.text_normalization import HESITATIONS
from d2v_speech.synthetic.switchboard import generate_mini_switchboard

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mini_switchboard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mini_swbd")
    generate_mini_switchboard(
        folder,
        conversations=3,
        eval_conversations=1,
        train_seconds=(20.0, 25.0),
        eval_seconds=(20.0, 25.0),
        progress=False,
    )
    return folder


def read_tsv(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_finetune_prints_swbd_callhome_and_eval2000(mini_switchboard, tmp_path):
    preset = tmp_path / "micro.yaml"
    preset.write_text(yaml.safe_dump(micro_config().to_dict()))
    out = tmp_path / "ft"
    command = [
        sys.executable,
        REPO / "recipes/Switchboard/finetune.py",
        REPO / "hparams/tiny/switchboard_ctc.yaml",
        "--pretrained=none",
        "--freeze_feature_encoder=False",
        f"--data_folder={mini_switchboard}",
        f"--model_preset={preset}",
        f"--output_folder={out}",
        "--dev_conversations=1",
        "--max_update=3",
        "--updates_per_epoch=3",
        "--num_workers=0",
        "--noprogressbar",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        list(map(str, command)), cwd=REPO, env=env, capture_output=True, timeout=600
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]

    results = json.loads((out / "results.json").read_text())
    sets = results["sets"]
    assert set(sets) == {"test_swbd", "test_callhome", "test_eval2000"}
    assert results["info"]["scorer"].startswith("jiwer after normalize_for_scoring")
    # eval2000 is the union of its two halves: sizes and error counts add up
    for key in ("utterances", "words", "word_substitutions", "word_deletions", "word_insertions"):
        assert sets["test_eval2000"][key] == sets["test_swbd"][key] + sets["test_callhome"][key]
    # the prepared references and the scored ones agree word for word, minus hesitations
    scored = {row["ID"]: row["REF"] for row in read_tsv(out / "hyp_test_eval2000.tsv")}
    with open(out / "prepared" / "test_eval2000.csv", encoding="utf-8") as handle:
        prepared = {row["ID"]: row["wrd"] for row in csv.DictReader(handle)}
    assert scored.keys() == prepared.keys()
    for utt_id, words in prepared.items():
        expected = [word for word in words.split() if word not in HESITATIONS]
        assert scored[utt_id].split() == expected, utt_id
    assert "| test_callhome |" in (out / "results.md").read_text()
