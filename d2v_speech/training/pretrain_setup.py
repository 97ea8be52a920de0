"""Wiring for the pretraining recipe: data preparation, datasets, loaders and recoverables.

Kept out of the recipe script so that the script stays a page of plain SpeechBrain and the
same wiring serves tests and other recipes.
"""

from __future__ import annotations

import os

from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from d2v_speech.data.batching import duration_batch_sampler
from d2v_speech.data.pipelines import CropCollate, PretrainAudioPipeline, load_pretrain_dataset

logger = get_logger(__name__)

EMBEDDED_CORPUS = os.path.join("data", "MiniLibriSpeech")


def ensure_embedded_corpus(data_folder: str, hours: float | None = None) -> None:
    """Generate the embedded corpus when the recipe points at it and it is not there yet.

    With ``hours`` None a complete corpus of any size is used as it is (for example one made
    with ``python -m d2v_speech.data.minicorpus --pool_hours 10``); with ``hours`` given, a
    corpus of another size is regenerated.
    """
    if os.path.normpath(data_folder) != os.path.normpath(EMBEDDED_CORPUS):
        if not os.path.isdir(data_folder):
            raise FileNotFoundError(f"data_folder {data_folder} does not exist")
        return
    from d2v_speech.data.minicorpus import STAMP_NAME, generate_corpus

    if hours is None and os.path.isfile(os.path.join(data_folder, STAMP_NAME)):
        return
    kwargs = {} if hours is None else {"hours": hours}
    run_on_main(generate_corpus, kwargs={"out_dir": data_folder, **kwargs})


def prepare_pretraining_data(hparams: dict) -> None:
    """Write the split CSVs (on the main process only) for the train and valid splits."""
    from d2v_speech.data.librispeech import prepare_librispeech

    ensure_embedded_corpus(hparams["data_folder"], hparams.get("embedded_corpus_hours"))
    splits = list(hparams["train_splits"]) + [hparams["valid_split"]]
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["prepared_folder"],
            "splits": splits,
            "skip_prep": hparams["skip_prep"],
        },
    )


def build_pretraining_loaders(hparams: dict):
    """Return (train_set, valid_set, train_loader_kwargs, valid_loader_kwargs) for Brain.fit."""
    folder = hparams["prepared_folder"]
    train_set = load_pretrain_dataset(
        [os.path.join(folder, f"{split}.csv") for split in hparams["train_splits"]],
        hparams["data_folder"],
        hparams["train_audio_pipeline"],
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    valid_pipeline = PretrainAudioPipeline(
        augmenter=hparams["train_audio_pipeline"].augmenter,
        normalize=hparams["train_audio_pipeline"].normalize,
        seed=hparams["seed"],
    )
    valid_set = load_pretrain_dataset(
        [os.path.join(folder, f"{hparams['valid_split']}.csv")],
        hparams["data_folder"],
        valid_pipeline,
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
    )
    sampler = duration_batch_sampler(train_set, hparams)
    train_kwargs = {
        "batch_sampler": sampler,
        "collate_fn": hparams["train_collate"],
        "num_workers": hparams["num_workers"],
    }
    valid_kwargs = {
        "batch_size": hparams["valid_batch_size"],
        "collate_fn": CropCollate(
            crop_to_shortest=False, max_samples=hparams["train_collate"].max_samples
        ),
        "num_workers": hparams["num_workers"],
    }
    return train_set, valid_set, train_kwargs, valid_kwargs
