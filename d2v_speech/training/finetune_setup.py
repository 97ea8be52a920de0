"""Data for the fine-tuning and evaluation recipes: split settings, CSVs, vocabulary, datasets,
loaders. The recipes read their YAML and pass the values; these functions take only what they use.

Per-split settings: the recipe YAML holds `split_settings` (one mapping per training split:
10m, 1h, 10h, 100h) and `train_split`. `apply_split_settings` turns the chosen split's mapping
into hyperpyyaml overrides before the YAML is loaded, so `--train_split=10m` selects the fork's
10-minute settings while any key given on the command line still wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.data import CTCCollate, FixedUpdatesBatchSampler, fixed_subset, load_asr_dataset
from d2v_speech.asr.vocabulary import LetterVocabulary, SentencePieceVocabulary
from d2v_speech.data.batching import duration_batch_sampler
from d2v_speech.training.recipe_yaml import expand_recipe_yaml

logger = get_logger(__name__)

__all__ = [
    "TRAIN_SPLIT_CSVS",
    "apply_split_settings",
    "build_test_sets",
    "build_training_sets",
    "build_vocabulary",
    "csv_replacements",
    "labelled_set",
    "prepare_finetuning_data",
    "prepare_switchboard_data",
    "read_yaml_values",
    "train_csv_path",
    "train_loader_kwargs",
]

#: prepared CSV of each training split (Libri-light sets, or LibriSpeech train-clean-100)
TRAIN_SPLIT_CSVS = {
    "10m": "train_10m.csv",
    "1h": "train_1h.csv",
    "10h": "train_10h.csv",
    "100h": "train-clean-100.csv",
}


# ---------------------------------------------------------------------------- split settings
class _TagIgnoringLoader(yaml.SafeLoader):
    """Reads a hyperpyyaml file's plain values; tagged nodes (`!new:`, `!ref`, ...) become None."""


_TagIgnoringLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_yaml_values(path: str | Path) -> dict[str, Any]:
    """Top-level plain values of a hyperpyyaml file (its base_yaml chain expanded), without
    building or importing anything."""
    values = yaml.load(expand_recipe_yaml(path), Loader=_TagIgnoringLoader)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a mapping of hyperparameters")
    return values


def apply_split_settings(hparams_file: str | Path, overrides: str | Mapping | None) -> dict:
    """Overrides for `load_hyperpyyaml`: the train split's settings, then the user's overrides.

    Raises ValueError for an unknown split or a split setting that is not a top-level key.
    """
    if isinstance(overrides, str):
        user = yaml.load(overrides, Loader=_TagIgnoringLoader) or {}
    else:
        user = dict(overrides or {})
    values = read_yaml_values(hparams_file)
    table = values.get("split_settings")
    if table is None:
        return user
    split = str(user.get("train_split", values.get("train_split")))
    if split not in table:
        raise ValueError(
            f"train_split={split!r} is not one of {sorted(table)} (split_settings in "
            f"{hparams_file})"
        )
    unknown = sorted(set(table[split]) - set(values))
    if unknown:
        raise ValueError(f"{hparams_file}: split_settings[{split}] sets unknown keys {unknown}")
    return {**table[split], **user}


# ---------------------------------------------------------------------------- data
def prepare_finetuning_data(
    *,
    data_folder: str,
    prepared_folder: str,
    librilight_folder: str,
    train_split: str,
    valid_split: str,
    test_splits: Sequence[str],
    subset_10m: int,
    skip_prep: bool = False,
    embedded_corpus_hours: float | None = None,
) -> None:
    """Write the CSVs for the train split, the valid split and the test splits (main process).

    Arguments
    ---------
    data_folder : str
        LibriSpeech root; the embedded corpus is generated when it is pointed at and missing.
    prepared_folder : str
        Where the CSVs go (`<split>.csv`, `train_10m.csv`, ...).
    librilight_folder : str
        Libri-light `librispeech_finetuning` root (read for the 10m / 1h / 10h splits).
    train_split : str
        One of `TRAIN_SPLIT_CSVS`: 10m, 1h, 10h (Libri-light) or 100h (train-clean-100).
    valid_split : str
        LibriSpeech split for validation, e.g. "dev-other".
    test_splits : sequence of str
        LibriSpeech splits to score, e.g. ["test-clean", "test-other"].
    subset_10m : int
        Which of the six Libri-light 10-minute subsets (0..5) `train_10m.csv` holds.
    skip_prep : bool
        Trust existing CSVs and write nothing.
    embedded_corpus_hours : float, optional
        Size of a generated embedded corpus (see `ensure_embedded_corpus`).
    """
    from d2v_speech.corpora.librispeech.prepare import (
        prepare_librilight_finetuning,
        prepare_librispeech,
    )
    from d2v_speech.training.pretrain_setup import ensure_embedded_corpus

    if train_split not in TRAIN_SPLIT_CSVS:
        raise ValueError(
            f"train_split must be one of {sorted(TRAIN_SPLIT_CSVS)}, got {train_split!r}"
        )
    ensure_embedded_corpus(data_folder, embedded_corpus_hours)
    splits = [valid_split, *test_splits]
    if train_split == "100h":
        splits.append("train-clean-100")
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": data_folder,
            "save_folder": prepared_folder,
            "splits": list(dict.fromkeys(splits)),
            "skip_prep": skip_prep,
        },
    )
    if train_split != "100h":
        run_on_main(
            prepare_librilight_finetuning,
            kwargs={
                "ll_folder": librilight_folder,
                "save_folder": prepared_folder,
                "subset_10m": int(subset_10m),
                "skip_prep": skip_prep,
            },
        )


#: the mini Switchboard a Switchboard recipe generates when it points there and it is missing
MINI_SWITCHBOARD = os.path.join("data", "MiniSwitchboard")


def prepare_switchboard_data(
    *,
    data_folder: str,
    prepared_folder: str,
    skip_prep: bool = False,
    mini_switchboard: Mapping[str, Any] | None = None,
    train_hours: float | None = None,
    dev_conversations: int | None = None,
    split_seed: int = 0,
    max_utt: int = 300,
    exclude_dev_callers: bool = True,
    min_duration: float | None = None,
    max_duration: float | None = None,
) -> None:
    """Switchboard + Hub5'00 CSVs (main process); the mini Switchboard is generated if needed.

    Arguments
    ---------
    data_folder : str
        LDC layout (docs/switchboard.md); `MINI_SWITCHBOARD` is generated when missing.
    prepared_folder : str
        Where the CSVs go (train, dev, test_swbd, test_callhome, test_eval2000, glm).
    skip_prep : bool
        Trust existing CSVs and write nothing.
    mini_switchboard : mapping, optional
        Arguments of `generate_mini_switchboard` (mini corpus only).
    train_hours, dev_conversations, split_seed, max_utt, exclude_dev_callers, min_duration,
    max_duration
        The split and filter settings of
        `d2v_speech.corpora.switchboard.prepare.prepare_switchboard` (`split_seed` is its `seed`).
    """
    from d2v_speech.corpora.switchboard.prepare import prepare_switchboard

    if os.path.normpath(data_folder) == os.path.normpath(MINI_SWITCHBOARD):
        from d2v_speech.synthetic.switchboard import generate_mini_switchboard

        run_on_main(
            generate_mini_switchboard,
            kwargs={"out_dir": data_folder, **(mini_switchboard or {})},
        )
    elif not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder {data_folder} does not exist")
    kwargs = {
        "data_folder": data_folder,
        "save_folder": prepared_folder,
        "train_hours": train_hours,
        "dev_conversations": dev_conversations,
        "seed": split_seed,
        "max_utt": max_utt,
        "exclude_dev_callers": exclude_dev_callers,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "skip_prep": skip_prep,
    }
    run_on_main(prepare_switchboard, kwargs=kwargs)


def csv_replacements(data_folder: str, librilight_folder: str | None = None) -> dict[str, str]:
    """CSV path placeholders: $data_root and $swbd_root (the corpus at `data_folder`), $ll_root
    (the Libri-light folder; empty when there is none)."""
    return {
        "data_root": data_folder,
        "swbd_root": data_folder,
        "ll_root": librilight_folder or "",
    }


def train_csv_path(prepared_folder: str, train_split: str, train_csv: str | None = None) -> str:
    """`train_csv` when set, else the prepared CSV of `train_split` (see `TRAIN_SPLIT_CSVS`)."""
    if train_csv:
        return train_csv
    return os.path.join(prepared_folder, TRAIN_SPLIT_CSVS[train_split])


def build_vocabulary(
    kind: str, *, tokenizer_folder: str, sentencepiece_vocab_size: int, train_csv: str
) -> LetterVocabulary | SentencePieceVocabulary:
    """The CTC output vocabulary.

    Arguments
    ---------
    kind : str
        "letters" (fairseq dict.ltr order) or "sentencepiece".
    tokenizer_folder : str
        Where a sentencepiece model is trained (or found from an earlier run).
    sentencepiece_vocab_size : int
        Size of a sentencepiece vocabulary.
    train_csv : str
        The training CSV, whose `wrd` column a sentencepiece model is trained on.
    """
    if kind == "letters":
        return LetterVocabulary()
    if kind == "sentencepiece":
        # SpeechBrain's SentencePiece trains on the main process only and is reused after
        return SentencePieceVocabulary.train(tokenizer_folder, sentencepiece_vocab_size, train_csv)
    raise ValueError(f"vocabulary_kind must be 'letters' or 'sentencepiece', got {kind!r}")


def labelled_set(
    csvs: Sequence[str],
    model: Any,
    replacements: Mapping[str, str],
    *,
    sort: bool,
    min_duration: float | None = None,
    max_duration: float | None = None,
    augmenter: Any = None,
):
    """Labelled `DynamicItemDataset` of `csvs` for `model` (a `CTCModel`: its vocabulary,
    normalisation and receptive field), sorted by duration when `sort`.

    Utterances outside [min_duration, max_duration] seconds are dropped (None: no bound);
    `augmenter` (a `FinetuneAugmenter`) augments the waveforms. Only training sets set these.
    """
    dataset = load_asr_dataset(
        csvs,
        replacements,
        model.vocabulary,
        normalize=model.normalize,
        min_samples=model.config.receptive_field,
        min_duration=min_duration,
        max_duration=max_duration,
        augmenter=augmenter,
    )
    return dataset.filtered_sorted(sort_key="duration") if sort else dataset


def build_training_sets(
    model: Any,
    *,
    train_csv: str,
    valid_csv: str,
    replacements: Mapping[str, str],
    dev_loss_utterances: int,
    seed: int,
    min_duration: float | None = None,
    max_duration: float | None = None,
    augmenter: Any = None,
    subset_10m: int | None = None,
):
    """(train_set, valid_set, dev_loss_set) for fine-tuning `model` (a `CTCModel`).

    Arguments
    ---------
    train_csv, valid_csv : str
        Prepared CSVs of the training and validation utterances.
    replacements : mapping
        CSV path placeholders (`csv_replacements`).
    dev_loss_utterances : int
        Size of the fixed dev subset whose loss is logged during training (drawn with `seed`).
    seed : int
        Seed of that draw.
    min_duration, max_duration : float, optional
        Training utterances outside this range (seconds) are dropped; None: no bound.
    augmenter : FinetuneAugmenter, optional
        Augments the training utterances.
    subset_10m : int, optional
        The Libri-light 10-minute subset trained on, named in the log.
    """
    train_set = labelled_set(
        [train_csv],
        model,
        replacements,
        sort=False,
        min_duration=min_duration,
        max_duration=max_duration,
        augmenter=augmenter,
    )
    valid_set = labelled_set([valid_csv], model, replacements, sort=True)
    dev_loss_set = fixed_subset(valid_set, dev_loss_utterances, seed)
    logger.info(
        "fine-tuning on %s (%d utterances, %.2f h)%s",
        train_csv,
        len(train_set),
        sum(float(train_set.data[i]["duration"]) for i in train_set.data_ids) / 3600,
        f", 10-minute subset {subset_10m}" if subset_10m is not None else "",
    )
    return train_set, valid_set, dev_loss_set


def train_loader_kwargs(
    train_set: Any,
    *,
    max_batch_seconds: float,
    num_buckets: int,
    seed: int,
    max_batch_utterances: int | None = None,
    updates_per_epoch: int | None = None,
    grad_accumulation_factor: int = 1,
    world_size: int = 1,
    pad_length_multiple: int = 1,
    num_workers: int = 0,
) -> dict[str, Any]:
    """`train_loader_kwargs` of `Brain.fit`: duration batches of `train_set`, CTC collate.

    Arguments
    ---------
    max_batch_seconds, num_buckets, seed, max_batch_utterances
        As in `duration_batch_sampler`.
    updates_per_epoch : int, optional
        Make an "epoch" (validation + checkpoint) this many updates (`FixedUpdatesBatchSampler`):
        that many times `grad_accumulation_factor` batches on each of `world_size` ranks.
        None or 0: an epoch is one pass over the data.
    pad_length_multiple : int
        Batches are padded to a multiple of this many samples (`CTCCollate`).
    num_workers : int
        DataLoader worker processes.
    """
    sampler = duration_batch_sampler(
        train_set,
        max_batch_seconds=max_batch_seconds,
        num_buckets=num_buckets,
        seed=seed,
        max_batch_utterances=max_batch_utterances,
    )
    if updates_per_epoch:
        batches = updates_per_epoch * grad_accumulation_factor * world_size
        sampler = FixedUpdatesBatchSampler(sampler, batches)
    return {
        "batch_sampler": sampler,
        "collate_fn": CTCCollate(pad_length_multiple),
        "num_workers": num_workers,
    }


def build_test_sets(
    model: Any,
    *,
    replacements: Mapping[str, str],
    prepared_folder: str | Path,
    test_splits: Sequence[str] = (),
    test_csvs: Sequence[str] = (),
) -> dict[str, Any]:
    """{name: dataset} for `model` (a `CTCModel`), sorted by duration: each of `test_splits`
    (`<prepared_folder>/<split>.csv`, named by the split) and each of `test_csvs` (paths, named
    by their stem); `replacements` are the CSV path placeholders (`csv_replacements`)."""
    csvs = {split: os.path.join(prepared_folder, f"{split}.csv") for split in test_splits}
    for path in test_csvs:
        csvs[Path(path).stem] = path
    if not csvs:
        raise ValueError("no test set: set test_splits and/or test_csvs")
    return {
        name: labelled_set([path], model, replacements, sort=True) for name, path in csvs.items()
    }
