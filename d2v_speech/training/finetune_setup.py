"""Wiring for the fine-tuning and evaluation recipes: split settings, data, vocabulary, loaders.

Kept out of the recipe scripts so that they stay a page of plain SpeechBrain and the same wiring
serves tests.

Per-split settings: the recipe YAML holds `split_settings` (one mapping per training split:
10m, 1h, 10h, 100h) and `train_split`. `apply_split_settings` turns the chosen split's mapping
into hyperpyyaml overrides before the YAML is loaded, so `--train_split=10m` selects the fork's
10-minute settings while any key given on the command line still wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    "prepare_finetuning_data",
    "prepare_switchboard_data",
    "read_yaml_values",
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
def prepare_finetuning_data(hparams: Mapping[str, Any]) -> None:
    """Write the CSVs for the train split, the valid split and the test splits (main process)."""
    from d2v_speech.data.librispeech import prepare_librilight_finetuning, prepare_librispeech
    from d2v_speech.training.pretrain_setup import ensure_embedded_corpus

    split = hparams["train_split"]
    if split not in TRAIN_SPLIT_CSVS:
        raise ValueError(f"train_split must be one of {sorted(TRAIN_SPLIT_CSVS)}, got {split!r}")
    ensure_embedded_corpus(hparams["data_folder"], hparams.get("embedded_corpus_hours"))
    splits = [hparams["valid_split"], *hparams["test_splits"]]
    if split == "100h":
        splits.append("train-clean-100")
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["prepared_folder"],
            "splits": list(dict.fromkeys(splits)),
            "skip_prep": hparams["skip_prep"],
        },
    )
    if split != "100h":
        run_on_main(
            prepare_librilight_finetuning,
            kwargs={
                "ll_folder": hparams["librilight_folder"],
                "save_folder": hparams["prepared_folder"],
                "subset_10m": int(hparams["subset_10m"]),
                "skip_prep": hparams["skip_prep"],
            },
        )


#: the mini Switchboard a Switchboard recipe generates when it points there and it is missing
MINI_SWITCHBOARD = os.path.join("data", "MiniSwitchboard")


def prepare_switchboard_data(hparams: Mapping[str, Any]) -> None:
    """Switchboard + Hub5'00 CSVs (main process); the mini Switchboard is generated if needed."""
    from d2v_speech.data.switchboard import prepare_switchboard

    data_folder = hparams["data_folder"]
    if os.path.normpath(data_folder) == os.path.normpath(MINI_SWITCHBOARD):
        from d2v_speech.data.mini_switchboard import generate_mini_switchboard

        run_on_main(
            generate_mini_switchboard,
            kwargs={"out_dir": data_folder, **(hparams.get("mini_switchboard") or {})},
        )
    elif not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder {data_folder} does not exist")
    kwargs = {
        "data_folder": data_folder,
        "save_folder": hparams["prepared_folder"],
        "train_hours": hparams.get("train_hours"),
        "dev_conversations": hparams.get("dev_conversations"),
        "seed": hparams.get("split_seed", 0),
        "max_utt": hparams.get("max_utt", 300),
        "exclude_dev_callers": hparams.get("exclude_dev_callers", True),
        "min_duration": hparams.get("min_duration"),
        "max_duration": hparams.get("max_duration"),
        "skip_prep": hparams["skip_prep"],
    }
    run_on_main(prepare_switchboard, kwargs=kwargs)


def _replacements(hparams: Mapping[str, Any]) -> dict[str, str]:
    """CSV path placeholders: $data_root and $swbd_root (the corpus), $ll_root (Libri-light)."""
    return {
        "data_root": hparams["data_folder"],
        "swbd_root": hparams["data_folder"],
        "ll_root": hparams.get("librilight_folder") or "",
    }


def train_csv(hparams: Mapping[str, Any]) -> str:
    """Path of the prepared CSV of `train_split` (or `train_csv` when set)."""
    if hparams.get("train_csv"):
        return hparams["train_csv"]
    return os.path.join(hparams["prepared_folder"], TRAIN_SPLIT_CSVS[hparams["train_split"]])


def build_vocabulary(hparams: Mapping[str, Any]) -> LetterVocabulary | SentencePieceVocabulary:
    """`vocabulary_kind` letters (fairseq order) or sentencepiece (trained on the train CSV)."""
    kind = hparams["vocabulary_kind"]
    if kind == "letters":
        return LetterVocabulary()
    if kind == "sentencepiece":
        # SpeechBrain's SentencePiece trains on the main process only and is reused after
        return SentencePieceVocabulary.train(
            os.path.join(hparams["save_folder"], "tokenizer"),
            hparams["sentencepiece_vocab_size"],
            train_csv(hparams),
        )
    raise ValueError(f"vocabulary_kind must be 'letters' or 'sentencepiece', got {kind!r}")


def _dataset(hparams, csvs, model, sort: bool, training: bool = False):
    """Labelled set; only training sets drop utterances by duration and are augmented."""
    dataset = load_asr_dataset(
        csvs,
        _replacements(hparams),
        model.vocabulary,
        normalize=model.normalize,
        min_samples=model.config.receptive_field,
        min_duration=hparams.get("min_duration") if training else None,
        max_duration=hparams.get("max_duration") if training else None,
        augmenter=hparams.get("train_augmenter") if training else None,
    )
    return dataset.filtered_sorted(sort_key="duration") if sort else dataset


def build_training_sets(hparams: Mapping[str, Any], model: Any, world_size: int = 1):
    """(train_set, valid_set, dev_loss_set, train_loader_kwargs, valid_loader_kwargs)."""
    train_set = _dataset(hparams, [train_csv(hparams)], model, sort=False, training=True)
    valid_csv = hparams.get("valid_csv") or os.path.join(
        hparams["prepared_folder"], f"{hparams['valid_split']}.csv"
    )
    valid_set = _dataset(hparams, [valid_csv], model, sort=True)
    dev_loss_set = fixed_subset(valid_set, hparams["dev_loss_utterances"], hparams["seed"])
    sampler = duration_batch_sampler(train_set, hparams)
    updates_per_epoch = hparams.get("updates_per_epoch")
    if updates_per_epoch:
        batches = updates_per_epoch * hparams["grad_accumulation_factor"] * world_size
        sampler = FixedUpdatesBatchSampler(sampler, batches)
    train_kwargs = {
        "batch_sampler": sampler,
        "collate_fn": CTCCollate(hparams.get("pad_length_multiple", 1)),
        "num_workers": hparams["num_workers"],
    }
    valid_kwargs = {
        "batch_size": hparams["valid_batch_size"],
        "collate_fn": CTCCollate(),
        "num_workers": hparams["num_workers"],
    }
    logger.info(
        "fine-tuning on %s (%d utterances, %.2f h)%s",
        train_csv(hparams),
        len(train_set),
        sum(float(train_set.data[i]["duration"]) for i in train_set.data_ids) / 3600,
        f", 10-minute subset {hparams['subset_10m']}"
        if hparams.get("train_split") == "10m"
        else "",
    )
    return train_set, valid_set, dev_loss_set, train_kwargs, valid_kwargs


def build_test_sets(hparams: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """{name: dataset} for `test_splits` (prepared CSVs) and any extra `test_csvs` paths."""
    csvs = {
        split: os.path.join(hparams["prepared_folder"], f"{split}.csv")
        for split in hparams.get("test_splits") or []
    }
    for path in hparams.get("test_csvs") or []:
        csvs[Path(path).stem] = path
    if not csvs:
        raise ValueError("no test set: set test_splits and/or test_csvs")
    return {name: _dataset(hparams, [path], model, sort=True) for name, path in csvs.items()}
