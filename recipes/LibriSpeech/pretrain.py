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

from d2v_speech.data.batching import duration_batch_sampler
from d2v_speech.data.pipelines import CropCollate
from d2v_speech.training.command_line import check_hparams, parse_recipe_arguments
from d2v_speech.training.pretrain_brain import PretrainBrain
from d2v_speech.training.pretrain_setup import load_pretraining_sets, prepare_pretraining_data
from d2v_speech.training.warm_start import warm_start_unless_resuming


def dataio_prepare(hparams):
    """(train_set, valid_set, train_loader_kwargs, valid_loader_kwargs) for `Brain.fit`."""
    train_set, valid_set = load_pretraining_sets(
        data_folder=hparams["data_folder"],
        prepared_folder=hparams["prepared_folder"],
        train_splits=hparams["train_splits"],
        valid_split=hparams["valid_split"],
        train_pipeline=hparams["train_audio_pipeline"],
        seed=hparams["seed"],
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    train_sampler = duration_batch_sampler(
        train_set,
        max_batch_seconds=hparams["max_batch_seconds"],
        num_buckets=hparams["num_buckets"],
        seed=hparams["seed"],
        max_batch_utterances=hparams.get("max_batch_utterances"),
    )
    train_kwargs = {
        "batch_sampler": train_sampler,
        "collate_fn": hparams["train_collate"],
        "num_workers": hparams["num_workers"],
    }
    # validation clips are padded, not cropped to the shortest of the batch
    valid_collate = CropCollate(
        crop_to_shortest=False, max_samples=hparams["train_collate"].max_samples
    )
    valid_kwargs = {
        "batch_size": hparams["valid_batch_size"],
        "collate_fn": valid_collate,
        "num_workers": hparams["num_workers"],
    }
    return train_set, valid_set, train_kwargs, valid_kwargs


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
    prepare_pretraining_data(
        data_folder=hparams["data_folder"],
        prepared_folder=hparams["prepared_folder"],
        train_splits=hparams["train_splits"],
        valid_split=hparams["valid_split"],
        skip_prep=hparams["skip_prep"],
        embedded_corpus_hours=hparams.get("embedded_corpus_hours"),
    )
    train_set, valid_set, train_kwargs, valid_kwargs = dataio_prepare(hparams)

    brain = PretrainBrain(
        modules={"objective": hparams["objective"]},
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    # continued pretraining: load released weights before the first update (never on resume)
    warm_start_unless_resuming(
        hparams["objective"],
        hparams["checkpointer"],
        hparams.get("init_from"),
        reset=hparams.get("init_reset") or ("optimizer",),
        teacher=hparams.get("init_teacher", "from_checkpoint"),
        load_heads=bool(hparams.get("init_load_heads", True)),
        strict_shapes=bool(hparams.get("init_strict_shapes", True)),
        pipeline_normalize=getattr(hparams.get("train_audio_pipeline"), "normalize", None),
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=valid_kwargs,
    )
