#!/usr/bin/env python3
"""Fine-tune a data2vec / data2vec-aqc encoder with CTC, then score test-clean and test-other.

    python recipes/LibriSpeech/finetune.py hparams/finetune_ctc.yaml \
        --pretrained=results/pretrain/aqc_base/1234 --train_split=10m --subset_10m=0 \
        --data_folder=/data/LibriSpeech --librilight_folder=/data/librispeech_finetuning
    python recipes/LibriSpeech/finetune.py hparams/tiny/finetune_ctc.yaml --pretrained=none

`--pretrained` takes our pretraining output folder, a CKPT+ folder, an official fairseq .pt, a
Hugging Face directory, or `none` (random initialisation: the from-scratch baseline).
Run the same command again after an interruption: it resumes from the last checkpoint.
The test results (best dev-WER checkpoint) go to <output_folder>/results.{json,md}.
"""

import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process

from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.evaluation import evaluate_sets
from d2v_speech.asr.finetune_setup import (
    apply_split_settings,
    build_test_sets,
    build_training_sets,
    build_vocabulary,
    prepare_finetuning_data,
)
from d2v_speech.training.finetune_brain import FineTuneBrain

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    overrides = apply_split_settings(hparams_file, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_finetuning_data(hparams)
    run_info = {
        "train_split": hparams["train_split"],
        "subset_10m": hparams["subset_10m"] if hparams["train_split"] == "10m" else None,
    }
    model = hparams["ctc_model"](vocabulary=build_vocabulary(hparams), info=run_info)
    hparams["model"] = model
    hparams["checkpointer"].add_recoverable("model", model)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    train_set, valid_set, dev_loss_set, train_kwargs, valid_kwargs = build_training_sets(
        hparams, model, world
    )

    brain = FineTuneBrain(
        modules={"encoder": model.encoder, "head": model.head},
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        dev_loss_set=dev_loss_set,
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=valid_kwargs,
    )

    # score the checkpoint with the lowest dev WER
    brain.checkpointer.recover_if_possible(min_key="WER")
    if if_main_process():
        evaluate_sets(
            model,
            build_test_sets(hparams, model),
            GreedyDecoder(model.vocabulary),
            hparams["output_folder"],
            brain.device,
            hparams["test_batch_size"],
            info={**model.info, "decoder": "greedy", "checkpoint": str(hparams["save_folder"])},
        )
