"""Data for the pretraining recipe: the embedded corpus, the split CSVs and the datasets.

The recipe reads its YAML and passes the values; these functions take only what they use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from d2v_speech.data.pipelines import PretrainAudioPipeline, load_pretrain_dataset

logger = get_logger(__name__)

EMBEDDED_CORPUS = os.path.join("data", "MiniLibriSpeech")


def ensure_embedded_corpus(data_folder: str, hours: float | None = None) -> None:
    """Generate the embedded corpus when the recipe points at it and it is not there yet.

    With ``hours`` None a complete corpus of any size is used as it is (for example one made
    with ``python -m d2v_speech.synthetic.librispeech --pool_hours 10``); with ``hours`` given, a
    corpus of another size is regenerated.
    """
    if os.path.normpath(data_folder) != os.path.normpath(EMBEDDED_CORPUS):
        if not os.path.isdir(data_folder):
            raise FileNotFoundError(f"data_folder {data_folder} does not exist")
        return
    from d2v_speech.synthetic.librispeech.generate import STAMP_NAME, generate_corpus

    if hours is None and os.path.isfile(os.path.join(data_folder, STAMP_NAME)):
        return
    kwargs = {} if hours is None else {"hours": hours}
    run_on_main(generate_corpus, kwargs={"out_dir": data_folder, **kwargs})


def prepare_pretraining_data(
    *,
    data_folder: str,
    prepared_folder: str,
    train_splits: Sequence[str],
    valid_split: str,
    skip_prep: bool = False,
    embedded_corpus_hours: float | None = None,
) -> None:
    """Write the split CSVs (on the main process only) for the train and valid splits.

    Arguments
    ---------
    data_folder : str
        LibriSpeech root; the embedded corpus (`EMBEDDED_CORPUS`) is generated when it is
        pointed at and missing.
    prepared_folder : str
        Where the CSVs go (`<split>.csv`).
    train_splits : sequence of str
        LibriSpeech splits to pretrain on, e.g. ["train-clean-100"].
    valid_split : str
        The validation split, e.g. "dev-clean".
    skip_prep : bool
        Trust existing CSVs and write nothing.
    embedded_corpus_hours : float, optional
        Size of a generated embedded corpus (see `ensure_embedded_corpus`).
    """
    from d2v_speech.corpora.librispeech.prepare import prepare_librispeech

    ensure_embedded_corpus(data_folder, embedded_corpus_hours)
    splits = list(train_splits) + [valid_split]
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": data_folder,
            "save_folder": prepared_folder,
            "splits": splits,
            "skip_prep": skip_prep,
        },
    )


def load_pretraining_sets(
    *,
    data_folder: str,
    prepared_folder: str,
    train_splits: Sequence[str],
    valid_split: str,
    train_pipeline: PretrainAudioPipeline,
    seed: int,
    min_duration: float,
    max_duration: float,
) -> tuple[DynamicItemDataset, DynamicItemDataset]:
    """(train_set, valid_set) of the prepared CSVs, for `Brain.fit`.

    Arguments
    ---------
    data_folder : str
        Corpus root, replacing `$data_root` in the CSVs.
    prepared_folder : str
        Folder of the prepared `<split>.csv` files.
    train_splits : sequence of str
        Training splits, concatenated.
    valid_split : str
        Validation split.
    train_pipeline : PretrainAudioPipeline
        Audio pipeline of the training set; the validation set gets one with the same augmenter
        and normalisation, seeded by `seed`.
    seed : int
        Seed of the validation pipeline's augmentation.
    min_duration, max_duration : float
        Utterances outside this range (seconds) are dropped from both sets.
    """
    train_set = load_pretrain_dataset(
        [os.path.join(prepared_folder, f"{split}.csv") for split in train_splits],
        data_folder,
        train_pipeline,
        min_duration=min_duration,
        max_duration=max_duration,
    )
    valid_pipeline = PretrainAudioPipeline(
        augmenter=train_pipeline.augmenter,
        normalize=train_pipeline.normalize,
        seed=seed,
    )
    valid_set = load_pretrain_dataset(
        [os.path.join(prepared_folder, f"{valid_split}.csv")],
        data_folder,
        valid_pipeline,
        min_duration=min_duration,
        max_duration=max_duration,
    )
    return train_set, valid_set
