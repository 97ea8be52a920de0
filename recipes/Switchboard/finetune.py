#!/usr/bin/env python3
"""Fine-tune a data2vec / data2vec-aqc encoder with CTC on a Switchboard subset; score Hub5'00.

    python recipes/Switchboard/finetune.py hparams/switchboard_ctc.yaml \
        --pretrained=results/pretrain/aqc_base/1234 --data_folder=/data/swbd --train_hours=30
    python recipes/Switchboard/finetune.py hparams/tiny/switchboard_ctc.yaml \
        --pretrained=results/pretrain/aqc_tiny/1234          # the mini Switchboard (generated)

`data_folder` holds the LDC layout (LDC97S62, swb_ms98_transcriptions, LDC2002S09, LDC2002T43;
see docs/switchboard.md). The 8 kHz segments are resampled to 16 kHz. WER is reported on the
Switchboard and CallHome halves of Hub5'00 and on both together (test_swbd, test_callhome,
test_eval2000), scored with jiwer after `normalize_for_scoring` (hesitations dropped, GLM
mappings applied to reference and hypothesis alike). Re-run to resume after an interruption.
"""

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import os
import sys
from functools import partial
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from d2v_speech.asr.data import CTCCollate
from d2v_speech.corpora.switchboard.text_normalization import GlmRules, normalize_for_scoring
from d2v_speech.training.command_line import check_hparams, parse_recipe_arguments
from d2v_speech.training.finetune_brain import FineTuneBrain
from d2v_speech.training.finetune_run import finetune_and_score
from d2v_speech.training.finetune_setup import (
    build_test_sets,
    build_training_sets,
    build_vocabulary,
    csv_replacements,
    prepare_switchboard_data,
    train_loader_kwargs,
)


def dataio_prepare(hparams, model):
    """(train_set, valid_set, dev_loss_set, train_loader_kwargs, valid_loader_kwargs)."""
    valid_csv = hparams.get("valid_csv") or os.path.join(
        hparams["prepared_folder"], f"{hparams['valid_split']}.csv"
    )
    train_set, valid_set, dev_loss_set = build_training_sets(
        model,
        train_csv=hparams["train_csv"],
        valid_csv=valid_csv,
        replacements=csv_replacements(hparams["data_folder"]),
        dev_loss_utterances=hparams["dev_loss_utterances"],
        seed=hparams["seed"],
        min_duration=hparams.get("min_duration"),
        max_duration=hparams.get("max_duration"),
        augmenter=hparams.get("train_augmenter"),
    )
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    train_kwargs = train_loader_kwargs(
        train_set,
        max_batch_seconds=hparams["max_batch_seconds"],
        num_buckets=hparams["num_buckets"],
        seed=hparams["seed"],
        max_batch_utterances=hparams.get("max_batch_utterances"),
        updates_per_epoch=hparams.get("updates_per_epoch"),
        grad_accumulation_factor=hparams["grad_accumulation_factor"],
        world_size=world_size,
        pad_length_multiple=hparams.get("pad_length_multiple", 1),
        num_workers=hparams["num_workers"],
    )
    valid_kwargs = {
        "batch_size": hparams["valid_batch_size"],
        "collate_fn": CTCCollate(),
        "num_workers": hparams["num_workers"],
    }
    return train_set, valid_set, dev_loss_set, train_kwargs, valid_kwargs


def test_datasets(hparams, model):
    """{name: dataset} of the YAML's `test_csvs` (Hub5'00 halves) and any `test_splits`."""
    return build_test_sets(
        model,
        replacements=csv_replacements(hparams["data_folder"]),
        prepared_folder=hparams["prepared_folder"],
        test_splits=hparams.get("test_splits") or [],
        test_csvs=hparams.get("test_csvs") or [],
    )


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_hparams(hparams, hparams_file)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_switchboard_data(
        data_folder=hparams["data_folder"],
        prepared_folder=hparams["prepared_folder"],
        skip_prep=hparams["skip_prep"],
        mini_switchboard=hparams.get("mini_switchboard"),
        train_hours=hparams.get("train_hours"),
        dev_conversations=hparams.get("dev_conversations"),
        split_seed=hparams.get("split_seed", 0),
        max_utt=hparams.get("max_utt", 300),
        exclude_dev_callers=hparams.get("exclude_dev_callers", True),
        min_duration=hparams.get("min_duration"),
        max_duration=hparams.get("max_duration"),
    )
    glm_csv = Path(hparams["prepared_folder"]) / "glm.csv"
    glm = GlmRules.from_csv(glm_csv) if glm_csv.exists() else None
    run_info = {  # saved inside the model and in the result files
        "train_split": "switchboard "
        + (f"{hparams['train_hours']} h" if hparams["train_hours"] else "(all conversations)"),
        "scorer": "jiwer after normalize_for_scoring" + (" + GLM" if glm else ""),
    }
    vocabulary = build_vocabulary(
        hparams["vocabulary_kind"],
        tokenizer_folder=os.path.join(hparams["save_folder"], "tokenizer"),
        sentencepiece_vocab_size=hparams["sentencepiece_vocab_size"],
        train_csv=hparams["train_csv"],
    )
    model = hparams["ctc_model"](vocabulary=vocabulary, info=run_info)
    hparams["model"] = model  # what FineTuneBrain trains
    hparams["checkpointer"].add_recoverable("model", model)
    train_set, valid_set, dev_loss_set, train_kwargs, valid_kwargs = dataio_prepare(hparams, model)
    # run_opts must be SpeechBrain's RunOptions: as a plain dict its unset options (None) would
    # override the YAML's (e.g. optimizer_step_limit)
    brain = FineTuneBrain(
        modules={"encoder": model.encoder, "head": model.head},
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        dev_loss_set=dev_loss_set,
    )
    finetune_and_score(
        brain,
        train_set,
        valid_set,
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=valid_kwargs,
        test_sets=partial(test_datasets, hparams, model),
        output_folder=hparams["output_folder"],
        test_batch_size=hparams["test_batch_size"],
        checkpoint_folder=hparams["save_folder"],
        score_normalizer=partial(normalize_for_scoring, glm=glm),
    )
