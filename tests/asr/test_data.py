"""Labelled data: bad-input errors, collate, update-sized epochs, per-split settings."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_csv

from d2v_speech.asr.data import (
    AudioTooShortError,
    CTCCollate,
    FixedUpdatesBatchSampler,
    TranscriptError,
    fixed_subset,
    load_asr_dataset,
)
from d2v_speech.asr.evaluation import decode_dataset
from d2v_speech.training.finetune_setup import apply_split_settings

NO_PLACEHOLDERS = {"data_root": "", "ll_root": ""}


def short_rows(short_set):
    with open(short_set, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_dataset_items_and_collate(short_set, letters):
    dataset = load_asr_dataset([short_set], NO_PLACEHOLDERS, letters, True, 400)
    rows = short_rows(short_set)
    item = dataset[0]
    assert item["text"] == rows[0]["wrd"]
    assert item["tokens"].tolist() == letters.encode(rows[0]["wrd"])
    assert item["chars"] == len(item["tokens"])
    raw = torch.from_numpy(sf.read(rows[0]["wav"], dtype="float32")[0])
    # fairseq normalize: layer_norm over the utterance, eps 1e-5
    expected = (raw - raw.mean()) / torch.sqrt(raw.var(unbiased=False) + 1e-5)
    assert torch.allclose(item["sig"], expected, atol=1e-5)
    batch = CTCCollate()([dataset[0], dataset[1]])
    assert batch["sig"].shape == (2, int(batch["lengths"].max()))
    assert batch["lengths"].tolist() == [dataset[0]["sig"].shape[0], dataset[1]["sig"].shape[0]]
    shorter = int(batch["lengths"].argmin())
    assert (batch["sig"][shorter, batch["lengths"][shorter] :] == 0).all()
    assert batch["tokens"][1, : batch["token_lengths"][1]].tolist() == dataset[1]["tokens"].tolist()


def test_transcripts_outside_the_vocabulary_are_all_listed(short_set, letters, tmp_path):
    rows = short_rows(short_set)
    rows[3]["wrd"] = "ROOM 101"
    rows[7]["wrd"] = "NAÏVE CAFÉ"
    rows[9]["wrd"] = " "
    bad = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(TranscriptError) as error:
        load_asr_dataset([bad], NO_PLACEHOLDERS, letters, True, 400)
    message = str(error.value)
    assert "bad.csv: 3 transcript(s)" in message
    assert "short-03: ['0', '1'] in 'ROOM 101'" in message
    assert "short-07: ['É', 'Ï']" in message
    assert "short-09: empty transcript" in message


def test_audio_shorter_than_the_receptive_field_is_named(short_set, letters, tmp_path):
    rows = short_rows(short_set)[:3]
    rows[1]["duration"] = "0.02"
    bad = write_csv(tmp_path / "short_duration.csv", rows)
    with pytest.raises(AudioTooShortError, match=r"short-01: 0.0200 s = 320 samples"):
        load_asr_dataset([bad], NO_PLACEHOLDERS, letters, True, 400)
    # a CSV whose duration lies: caught when the audio is read, naming utterance and file
    tiny = tmp_path / "tiny.flac"
    sf.write(tiny, np.zeros(300, dtype=np.float32), 16000)
    rows[1].update(duration="1.0", wav=str(tiny))
    lying = write_csv(tmp_path / "lying.csv", rows)
    dataset = load_asr_dataset([lying], NO_PLACEHOLDERS, letters, True, 400)
    with pytest.raises(
        AudioTooShortError, match=r"utterance short-01 \(.*tiny.flac\): 300 samples"
    ):
        dataset[1]


def test_empty_sets_are_refused(short_set, letters, tmp_path):
    empty = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(ValueError, match="no utterances in .*empty.csv"):
        load_asr_dataset([empty], NO_PLACEHOLDERS, letters, True, 400)
    with pytest.raises(ValueError, match="lasts between 100.0 and None"):
        load_asr_dataset([short_set], NO_PLACEHOLDERS, letters, True, 400, min_duration=100.0)
    with pytest.raises(ValueError, match="test-x: the set has no utterances"):
        decode_dataset(None, [], None, description="test-x")


def test_fixed_subset_is_deterministic_and_sorted(short_set, letters):
    dataset = load_asr_dataset([short_set], NO_PLACEHOLDERS, letters, True, 400)
    first = fixed_subset(dataset, 10, seed=3)
    again = fixed_subset(dataset, 10, seed=3)
    assert list(first.data_ids) == list(again.data_ids) and len(first) == 10
    durations = [float(first.data[i]["duration"]) for i in first.data_ids]
    assert durations == sorted(durations)
    assert len(fixed_subset(dataset, 100, seed=3)) == 32


class CountingSampler:
    """Batches of 3 indices out of 10, reshuffled per pass: 4 batches (the last one short)."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(self.epoch)).tolist()
        return iter([order[i : i + 3] for i in range(0, 10, 3)])


def test_fixed_updates_epochs_are_exact_and_replayable():
    sampler = FixedUpdatesBatchSampler(CountingSampler(), batches_per_epoch=6)
    sampler.set_epoch(2)
    epoch2 = list(sampler)
    assert len(epoch2) == len(sampler) == 6
    inner = CountingSampler()
    expected = []
    for inner_pass in (14, 15):  # epoch e reads inner passes e * (K + 1), ...
        inner.set_epoch(inner_pass)
        expected += list(inner)
    assert epoch2 == expected[:6]
    sampler.set_epoch(1)
    assert list(sampler) != epoch2
    sampler.set_epoch(2)
    assert list(sampler) == epoch2
    with pytest.raises(ValueError, match="batches_per_epoch must be >= 1"):
        FixedUpdatesBatchSampler(CountingSampler(), 0)


def test_split_settings_are_applied_and_the_command_line_wins():
    yaml_file = "hparams/finetune_ctc.yaml"
    ten_min = apply_split_settings(yaml_file, "train_split: 10m\n")
    assert ten_min["lr"] == 5e-5 and ten_min["max_update"] == 13000
    assert ten_min["mask_channel_prob"] == 0.25 and ten_min["freeze_transformer_updates"] == 10000
    hundred = apply_split_settings(yaml_file, {"train_split": "100h", "lr": 1e-4})
    assert hundred["lr"] == 1e-4 and hundred["max_update"] == 80000
    assert hundred["freeze_transformer_updates"] == 0 and hundred["updates_per_epoch"] is None
    default = apply_split_settings(yaml_file, "")
    assert default["max_update"] == 20000 and default["layerdrop"] == 0.05
    with pytest.raises(ValueError, match=r"train_split='2h' is not one of \['100h', '10h'"):
        apply_split_settings(yaml_file, "train_split: 2h")
