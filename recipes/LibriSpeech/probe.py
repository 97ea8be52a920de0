#!/usr/bin/env python3
"""Frozen-encoder probes of a pretrained encoder: CTC character recognition and speaker ID.

    python recipes/LibriSpeech/probe.py hparams/tiny/probe.yaml \
        --pretrained=results/pretrain/aqc_tiny/1234
    python recipes/LibriSpeech/probe.py hparams/tiny/probe.yaml --pretrained=none

Writes <output_folder>/results.json (dev CER / WER of the CTC probe, speaker accuracy, the
learned layer weights) and results.md. See hparams/tiny/probe.yaml for what is trained.
"""

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import json
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset

from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.corpora.librispeech.prepare import (
    prepare_librilight_finetuning,
    prepare_librispeech,
)
from d2v_speech.probe.probe_run import (
    load_frozen_encoder,
    results_markdown,
    run_probes,
    split_by_speaker,
)
from d2v_speech.training.command_line import check_hparams, parse_recipe_arguments
from d2v_speech.training.pretrain_setup import ensure_embedded_corpus


def rows(csv_path, hparams):
    replacements = {"data_root": hparams["data_folder"], "ll_root": hparams["librilight_folder"]}
    return DynamicItemDataset.from_csv(csv_path, replacements=replacements).data


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_hparams(hparams, hparams_file)
    out = hparams["output_folder"]
    sb.create_experiment_directory(out, hyperparams_to_save=hparams_file, overrides=overrides)
    # check the encoder source before any data work
    encoder, normalize = load_frozen_encoder(hparams["pretrained"], hparams["model_preset"])
    ensure_embedded_corpus(hparams["data_folder"], hparams["embedded_corpus_hours"])
    prepared = hparams["prepared_folder"]
    splits = [*hparams["eval_splits"], hparams["speaker_split"]]
    prepare_librispeech(hparams["data_folder"], prepared, splits=splits, progress=False)
    prepare_librilight_finetuning(
        hparams["librilight_folder"], prepared, subset_10m=hparams["subset_10m"], progress=False
    )

    def items(split):
        return [
            (u, r["wav"], r["wrd"]) for u, r in rows(f"{prepared}/{split}.csv", hparams).items()
        ]

    speaker_rows = rows(f"{prepared}/{hparams['speaker_split']}.csv", hparams)
    train, test, _ = split_by_speaker(
        speaker_rows, hparams["speaker_held_out_every"], hparams["speaker_utterances"]
    )
    results = run_probes(
        encoder,
        normalize,
        ctc_train=items(f"train_{hparams['train_split']}"),
        ctc_eval={split: items(split) for split in hparams["eval_splits"]},
        speakers=(train, test),
        settings=hparams["settings"],
    )
    results["pretrained"] = str(hparams["pretrained"])
    write_text_atomic(f"{out}/results.json", json.dumps(results, indent=2) + "\n")
    markdown = results_markdown(results)
    write_text_atomic(f"{out}/results.md", markdown)
    print(markdown)
