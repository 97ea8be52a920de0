"""Checkpoints of our pretraining recipe: `CKPT+*` folders, `objective.ckpt` and the architecture
read back from the experiment's `hyperparams.yaml`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from d2v_speech.checkpoints.loaded import (
    CKPT_FOLDER_PREFIX,
    CKPT_META_FILE,
    FORMAT_RECIPE,
    HEAD_NAMES,
    RECIPE_HPARAMS_FILE,
    RECIPE_OBJECTIVE_FILE,
    CheckpointError,
    LoadedCheckpoint,
    _validated,
)
from d2v_speech.checkpoints.torch_files import (
    _torch_load,
)
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.presets import load_model_config


class _Tagged(NamedTuple):
    """A hyperpyyaml `!tag:target` node read without building it."""

    tag: str
    value: Any


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads a hyperpyyaml file without importing or calling anything it names."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return _Tagged("!" + suffix, value)


_TagTolerantLoader.add_multi_constructor("!", _construct_tagged)

_PRESET_LOADERS = ("!apply:d2v_speech.nn.presets.load_model_config",)
_CONFIG_CLASSES = ("!new:d2v_speech.nn.config.EncoderConfig", "!new:d2v_speech.nn.EncoderConfig")


def _call_arguments(node: _Tagged) -> tuple[list, dict]:
    if isinstance(node.value, list):
        return list(node.value), {}
    if isinstance(node.value, dict):
        return [], dict(node.value)
    return ([node.value] if node.value not in (None, "") else []), {}


def read_hparams_mapping(path: str | Path) -> dict[str, Any]:
    """An experiment's `hyperparams.yaml` as a dict, references resolved; a `!tag:target` node
    becomes a `_Tagged` (tag, value) and nothing it names is imported or run."""
    from hyperpyyaml import resolve_references

    with open(path, encoding="utf-8") as handle:
        values = yaml.load(resolve_references(handle).getvalue(), Loader=_TagTolerantLoader)
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: not a mapping of hyperparameters")
    return values


def read_recipe_hparams(path: str | Path) -> tuple[EncoderConfig, bool | None]:
    """(encoder config, waveform normalisation) of an experiment's `hyperparams.yaml`.

    The config is what the recipe built: `model_config` when it calls
    `d2v_speech.nn.presets.load_model_config` (preset plus any overridden fields) or
    `EncoderConfig`, or is a plain mapping of fields; otherwise `model_preset`. Nothing the
    YAML names is imported or run. Normalisation is `train_audio_pipeline`'s `normalize`.
    """
    path = Path(path)
    values = read_hparams_mapping(path)
    node = values.get("model_config")
    try:
        if isinstance(node, _Tagged) and node.tag in _PRESET_LOADERS + _CONFIG_CLASSES:
            args, kwargs = _call_arguments(node)
            build = load_model_config if node.tag in _PRESET_LOADERS else EncoderConfig
            config = build(*args, **kwargs)
        elif isinstance(node, _Tagged):
            raise CheckpointError(
                f"model_config is built by {node.tag}, which is not read without running it; "
                "pass config=EncoderConfig(...) (CLI: --config)"
            )
        elif isinstance(node, dict):
            config = EncoderConfig.from_dict(node)
        elif values.get("model_preset"):
            config = load_model_config(values["model_preset"])
        else:
            raise CheckpointError("neither model_config nor model_preset is set")
    except (TypeError, ValueError, FileNotFoundError) as error:
        raise CheckpointError(f"{path}: cannot read the encoder config: {error}") from error
    pipeline = values.get("train_audio_pipeline")
    normalize = None
    if isinstance(pipeline, _Tagged) and isinstance(pipeline.value, dict):
        normalize = pipeline.value.get("normalize")
    return config, None if normalize is None else bool(normalize)


def complete_checkpoint_folders(folder: str | Path) -> list[Path]:
    """`CKPT+*` folders directly under `folder` that have their `CKPT.yaml`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.iterdir()
        if path.is_dir()
        and path.name.startswith(CKPT_FOLDER_PREFIX)
        and (path / CKPT_META_FILE).is_file()
    ]
    return sorted(found, key=lambda path: (_checkpoint_time(path), path.name))


def _checkpoint_time(folder: Path) -> float:
    """SpeechBrain's `unixtime` meta entry (what its own recovery sorts by), else the mtime."""
    try:
        meta = yaml.safe_load((folder / CKPT_META_FILE).read_text(encoding="utf-8"))
        return float(meta["unixtime"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return (folder / CKPT_META_FILE).stat().st_mtime


def find_recipe_checkpoint(path: str | Path) -> Path:
    """The `objective.ckpt` meant by `path`.

    `path` is that file, a `CKPT+<stamp>` folder, or a folder holding checkpoint folders
    directly (the save folder) or one level down (the output folder); then the newest complete
    checkpoint is used.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.name.startswith(CKPT_FOLDER_PREFIX):
        if not (path / CKPT_META_FILE).is_file():
            raise CheckpointError(
                f"{path} has no {CKPT_META_FILE}: its save was interrupted, so it is incomplete"
            )
        folder = path
    else:
        candidates = complete_checkpoint_folders(path) + [
            ckpt
            for child in sorted(path.iterdir())
            if child.is_dir()
            for ckpt in complete_checkpoint_folders(child)
        ]
        if not candidates:
            raise CheckpointError(
                f"{path}: neither a Hugging Face directory (no config.json) nor a recipe output "
                f"(no {CKPT_FOLDER_PREFIX}* folder with {CKPT_META_FILE} in it or one level down)"
            )
        folder = max(candidates, key=lambda ckpt: (_checkpoint_time(ckpt), ckpt.name))
    objective = folder / RECIPE_OBJECTIVE_FILE
    if not objective.is_file():
        raise CheckpointError(f"{folder}: no {RECIPE_OBJECTIVE_FILE} in this checkpoint")
    return objective


def _find_recipe_hparams(objective_file: Path) -> Path | None:
    """`hyperparams.yaml` next to the checkpoint folder, its save folder or the output folder."""
    for folder in list(objective_file.resolve().parents)[:4]:
        if (folder / RECIPE_HPARAMS_FILE).is_file():
            return folder / RECIPE_HPARAMS_FILE
    return None


def _is_objective_state(content: Mapping[str, Any]) -> bool:
    return "_extra_state" in content and any(str(key).startswith("model.") for key in content)


def load_objective_state(
    state: Mapping[str, Any], config: EncoderConfig, normalize: bool | None = None
) -> LoadedCheckpoint:
    """Convert `Data2VecObjective` / `AQCObjective.state_dict()` (our recipe's checkpoint).

    `model.*` is the encoder, `final_proj` / `quantizer` / `project_q` / `contr_proj` the heads
    (the quantizer's `_extra_state` included), `_extra_state["teacher"]` the EMA teacher.
    """
    encoder_state: dict[str, torch.Tensor] = {}
    heads: dict[str, dict[str, Any]] = {}
    unknown = []
    for key, value in state.items():
        prefix, _, local = key.partition(".")
        if key == "_extra_state":
            continue
        if prefix == "model" and local:
            encoder_state[local] = value
        elif prefix in HEAD_NAMES and local:
            heads.setdefault(prefix, {})[local] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"unknown keys in the objective checkpoint ({len(unknown)}): {sorted(unknown)}"
        )
    extra = state["_extra_state"]
    teacher = extra.get("teacher") if isinstance(extra, Mapping) else None
    if teacher is not None and (
        not isinstance(teacher, Mapping) or not {"model", "num_updates"} <= set(teacher)
    ):
        raise CheckpointError(
            "objective _extra_state['teacher'] must hold 'model' and 'num_updates' "
            "(EMATeacher.state_dict())"
        )
    return _validated(
        LoadedCheckpoint(
            config=config,
            encoder_state=encoder_state,
            teacher_state=None if teacher is None else dict(teacher["model"]),
            heads=heads,
            source_format=FORMAT_RECIPE,
            normalize=normalize,
            num_updates=None if teacher is None else int(teacher["num_updates"]),
        )
    )


def load_recipe_checkpoint(
    path: str | Path,
    config: EncoderConfig | None = None,
    pos_conv_mask_padding: bool | None = None,
    state: Mapping[str, Any] | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint of our pretraining recipe (see `find_recipe_checkpoint` for `path`).

    The architecture is `config` when given, else the experiment's `hyperparams.yaml` (found
    next to the checkpoint, its save folder or output folder). `state`: the already loaded file.
    """
    objective_file = find_recipe_checkpoint(path)
    normalize = None
    if config is None:
        hparams_file = _find_recipe_hparams(objective_file)
        if hparams_file is None:
            raise CheckpointError(
                f"{objective_file}: no {RECIPE_HPARAMS_FILE} found in the folders above it to "
                "read the architecture from; pass config=EncoderConfig(...) (CLI: --config)"
            )
        config, normalize = read_recipe_hparams(hparams_file)
        if pos_conv_mask_padding is not None:
            config = EncoderConfig.from_dict(
                {**config.to_dict(), "pos_conv_mask_padding": pos_conv_mask_padding}
            )
    if state is None:
        state = _torch_load(objective_file, allow_pickle=False)
    if not isinstance(state, Mapping) or not _is_objective_state(state):
        raise CheckpointError(
            f"{objective_file}: not an objective state dict (needs model.* keys and _extra_state)"
        )
    return load_objective_state(state, config, normalize)
