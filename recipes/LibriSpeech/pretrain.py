#!/usr/bin/env python3
"""Pretrain data2vec or data2vec-aqc on LibriSpeech (or the embedded corpus).

    python recipes/LibriSpeech/pretrain.py hparams/aqc.yaml --data_folder=/data/LibriSpeech
    python recipes/LibriSpeech/pretrain.py hparams/tiny/aqc.yaml          # embedded corpus, CPU
    torchrun --nproc_per_node=8 recipes/LibriSpeech/pretrain.py hparams/aqc.yaml --data_folder=...
    # CPU DDP: add --distributed_backend=gloo

Run the same command again after an interruption: it resumes from the last checkpoint.
"""

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from d2v_speech.training.command_line import check_hparams, parse_recipe_arguments
from d2v_speech.training.pretrain_brain import PretrainBrain
from d2v_speech.training.pretrain_setup import (
    build_pretraining_loaders,
    prepare_pretraining_data,
)
from d2v_speech.training.warm_start import warm_start_from_hparams

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
    prepare_pretraining_data(hparams)
    train_set, valid_set, train_kwargs, valid_kwargs = build_pretraining_loaders(hparams)

    brain = PretrainBrain(
        modules={"objective": hparams["objective"]},
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    # continued pretraining: load released weights before the first update (never on resume)
    warm_start_from_hparams(hparams)
    brain.fit(
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=valid_kwargs,
    )
