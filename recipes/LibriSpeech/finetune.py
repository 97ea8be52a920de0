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

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from d2v_speech.training.command_line import check_hparams, parse_recipe_arguments
from d2v_speech.training.finetune_run import finetune_and_score
from d2v_speech.training.finetune_setup import apply_split_settings, prepare_finetuning_data

if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    overrides = apply_split_settings(hparams_file, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_hparams(hparams, hparams_file)
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
    finetune_and_score(hparams, run_opts, run_info)
