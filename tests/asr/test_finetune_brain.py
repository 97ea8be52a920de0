"""FineTuneBrain: leaves the CTC plateau on 32 utterances, frozen-encoder phase, exact resume."""

import json

import torch
from conftest import make_brain, micro_config

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.data import CTCCollate, FixedUpdatesBatchSampler, load_asr_dataset
from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.evaluation import decode_dataset
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.nn import Data2VecAudioModel

#: blank + letter-unigram plateau of CTC on English letters (nats per character)
PLATEAU = 2.9


def read_log(folder):
    return [json.loads(line) for line in (folder / "train_steps.jsonl").read_text().splitlines()]


def test_overfit_32_utterances_leaves_the_ctc_plateau(overfit_run, short_set):
    out, model = overfit_run
    records = read_log(out)
    train = [r["train_nats_per_char"] for r in records if "train_nats_per_char" in r]
    assert len(train) == 8  # every 5 of the 40 updates
    assert train[0] > PLATEAU  # starts above the plateau (random head)
    assert train[-1] < 0.5 * PLATEAU, train
    # the held-out read-out is logged from update 1 on
    dev = {r["update"]: r["dev_subset_nats_per_char"] for r in records if "dev_subset_cer" in r}
    assert sorted(dev) == [1, 20, 40] and dev[40] < dev[1]
    # memorised: greedy decoding gives back most training transcripts exactly
    dataset = load_asr_dataset([short_set], {}, model.vocabulary, True, 400)
    outputs = decode_dataset(model, dataset, GreedyDecoder(model.vocabulary), progress=False)
    exact = sum(r == h for r, h in zip(outputs.references, outputs.hypotheses))
    assert exact >= 24, list(zip(outputs.references, outputs.hypotheses))[:5]


def build_run(out, short_set, max_updates):
    """Micro model, encoder frozen for 2 updates, 2-update epochs with validation + checkpoint."""
    torch.manual_seed(0)
    vocabulary = LetterVocabulary()
    model = CTCModel(
        Data2VecAudioModel(micro_config(dropout=0.1)),
        len(vocabulary),
        vocabulary=vocabulary,
        freeze_transformer_updates=2,
        mask_prob=0.3,
        mask_channel_length=4,
        mask_channel_prob=0.2,
    )
    dataset = load_asr_dataset([short_set], {}, vocabulary, True, 400)
    valid = dataset.filtered_sorted(select_n=4)
    from speechbrain.dataio.sampler import DynamicBatchSampler

    sampler = DynamicBatchSampler(
        dataset, 6.0, num_buckets=2, length_func=lambda row: float(row["duration"]), seed=5
    )
    brain = make_brain(out, model, 1e-3, max_updates, log_interval=1)
    loaders = {
        "train_loader_kwargs": {
            "batch_sampler": FixedUpdatesBatchSampler(sampler, 2),
            "collate_fn": CTCCollate(),
        },
        "valid_loader_kwargs": {"batch_size": 4, "collate_fn": CTCCollate()},
    }
    return brain, model, dataset, valid, loaders


def test_frozen_phase_then_exact_resume(short_set, tmp_path):
    torch.manual_seed(0)
    initial = CTCModel(
        Data2VecAudioModel(micro_config(dropout=0.1)), 32, mask_channel_length=4
    ).state_dict()

    straight, model_a, dataset, valid, loaders = build_run(tmp_path / "a", short_set, 4)
    straight.fit(straight.hparams.epoch_counter, dataset, valid, **loaders)

    first, model_b, dataset, valid, loaders = build_run(tmp_path / "b", short_set, 2)
    first.fit(first.hparams.epoch_counter, dataset, valid, **loaders)
    encoder_keys = [k for k in initial if k.startswith("encoder.")]
    after_frozen = model_b.state_dict()
    # two frozen updates: only the head moved
    assert all(torch.equal(after_frozen[k], initial[k]) for k in encoder_keys)
    assert not torch.equal(after_frozen["head.proj.weight"], initial["head.proj.weight"])
    frozen_flags = [r["transformer_frozen"] for r in read_log(tmp_path / "b") if "lr" in r]
    assert frozen_flags == [1, 1]

    resumed, model_c, dataset, valid, loaders = build_run(tmp_path / "b", short_set, 4)
    resumed.fit(resumed.hparams.epoch_counter, dataset, valid, **loaders)
    assert resumed.optimizer_step == straight.optimizer_step == 4
    final_a, final_c = model_a.state_dict(), model_c.state_dict()
    for key in initial:
        if key != "_extra_state":
            assert torch.equal(final_a[key], final_c[key]), key
    moved = [k for k in encoder_keys if not k.split(".")[2] == "feature_extractor"]
    assert any(not torch.equal(final_a[k], initial[k]) for k in moved)
    cnn = [k for k in encoder_keys if k.split(".")[2] == "feature_extractor"]
    assert all(torch.equal(final_a[k], initial[k]) for k in cnn)
    # the dev WER of each validation is in the checkpoint meta, so the best one can be chosen
    meta = sorted((tmp_path / "b" / "save").glob("CKPT+*/CKPT.yaml"))
    assert meta and all("WER:" in path.read_text() for path in meta)
