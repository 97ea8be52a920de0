"""A file that cannot be read during training or evaluation is skipped, named and counted; past
the YAML's max_unreadable_files the run stops with a message naming it."""

import csv
import json
import shutil

import pytest
import torch
from conftest import make_brain, micro_config

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.data import CTCCollate, load_asr_dataset
from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.evaluation import evaluate_sets
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.nn import Data2VecAudioModel
from d2v_speech.training.recipe_brain import TooManyUnreadableFilesError


def damaged_copy(short_set, folder):
    """The short set's CSV with utterance 3's audio truncated and utterance 5's deleted."""
    folder.mkdir()
    rows = list(csv.DictReader(open(short_set, newline="")))
    for index in (3, 5):
        copy = folder / f"damaged-{index}.flac"
        shutil.copy(rows[index]["wav"], copy)
        rows[index]["wav"] = str(copy)
    data = (folder / "damaged-3.flac").read_bytes()
    (folder / "damaged-3.flac").write_bytes(data[: len(data) // 3])
    (folder / "damaged-5.flac").unlink()
    path = folder / "damaged.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, [rows[3]["ID"], rows[5]["ID"]]


def micro_model_and_data(csv_path):
    torch.manual_seed(0)
    vocabulary = LetterVocabulary()
    model = CTCModel(
        Data2VecAudioModel(micro_config()), len(vocabulary), vocabulary=vocabulary,
        mask_channel_length=4,
    )  # fmt: skip
    return model, load_asr_dataset([csv_path], {}, vocabulary, True, 400)


def run(out, csv_path, limit):
    model, dataset = micro_model_and_data(csv_path)
    brain = make_brain(out, model, 1e-3, 6)
    brain.hparams.max_unreadable_files = limit
    loader = {"batch_size": 8, "collate_fn": CTCCollate(), "shuffle": False}
    brain.fit(brain.hparams.epoch_counter, dataset, train_loader_kwargs=loader)
    return brain, model, dataset


def test_training_skips_and_names_unreadable_files_then_stops_past_the_limit(
    short_set, tmp_path, caplog
):
    csv_path, _ = damaged_copy(short_set, tmp_path / "data")
    brain, _, _ = run(tmp_path / "a", csv_path, limit=100)
    assert brain.optimizer_step == 6  # 4 batches per pass, every one trained on
    assert brain.unreadable_files == 4  # two files, met in each of the two passes
    assert "damaged-3.flac" in caplog.text and "damaged-5.flac" in caplog.text
    assert "(4 so far)" in caplog.text
    with pytest.raises(TooManyUnreadableFilesError, match="max_unreadable_files \\(1\\)"):
        run(tmp_path / "b", csv_path, limit=1)


def test_evaluation_scores_the_readable_utterances_and_lists_the_rest(short_set, tmp_path):
    csv_path, bad_ids = damaged_copy(short_set, tmp_path / "data")
    model, dataset = micro_model_and_data(csv_path)
    rates = evaluate_sets(
        model, {"damaged": dataset}, GreedyDecoder(model.vocabulary), tmp_path / "out",
        progress=False,
    )  # fmt: skip
    assert rates["damaged"].utterances == 30
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    listed = results["info"]["damaged_unreadable_files"]
    assert len(listed) == 2 and "damaged-3.flac" in listed[0] and "damaged-5.flac" in listed[1]
    scored = (tmp_path / "out" / "hyp_damaged.tsv").read_text()
    assert not any(uttid in scored for uttid in bad_ids)
