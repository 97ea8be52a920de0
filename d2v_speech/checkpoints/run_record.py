"""What one of our recipe runs recorded about a checkpoint, for its model card.

`read_training_run(checkpoint_file)` finds the run's ``hyperparams.yaml`` in the folders above
the exported checkpoint (its ``CKPT+*`` folder, the save folder, the output folder) and reads,
without building anything it names: the objective class, the corpus and training splits, the
update limit, the precision and the seed; from the exported ``CKPT+*`` folder the updates done
(``brain.ckpt``'s ``optimizer_step``) and the dev scores (``CKPT.yaml``); and, for a fine-tuning
run, the test sets of the ``results.json`` the recipe wrote into its output folder
(`d2v_speech.asr.scoring.write_results`: ``{"info": ..., "sets": {name: {"wer", "cer", ...}}}``),
kept exactly as stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from d2v_speech.checkpoints.loaded import (
    CKPT_FOLDER_PREFIX,
    CKPT_META_FILE,
    RECIPE_HPARAMS_FILE,
    CheckpointError,
)
from d2v_speech.checkpoints.recipe import (
    _Tagged,
    complete_checkpoint_folders,
    read_hparams_mapping,
)

__all__ = ["RESULTS_FILE", "TrainingRun", "read_training_run"]

#: what the fine-tuning recipe writes into its output folder (test WER / CER per set)
RESULTS_FILE = "results.json"
#: SpeechBrain's Brain state in a checkpoint folder (YAML: step, optimizer_step, ...)
BRAIN_STATE_FILE = "brain.ckpt"
#: "trained on" lines: (label, hyperparams.yaml keys; the first one set is shown)
RUN_FIELDS = (
    ("pretrained from", ("pretrained", "init_from")),
    ("corpus", ("data_folder",)),
    ("training data", ("train_csv", "train_splits", "train_split")),
    ("vocabulary", ("vocabulary_kind",)),
    ("model preset", ("model_preset",)),
    ("update limit", ("optimizer_step_limit", "max_update")),
    ("precision", ("precision",)),
    ("seed", ("seed",)),
)
#: dev scores a fine-tuning checkpoint's CKPT.yaml records
DEV_METRICS = ("WER", "CER", "nats_per_char")
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, yaml.YAMLError)


@dataclass
class TrainingRun:
    """What a recipe run says about the exported checkpoint.

    Attributes
    ----------
    hparams_file : Path
        The run's ``hyperparams.yaml`` (its folder is the run's output folder).
    facts : list of (str, str)
        "Trained on" lines, label and text, in the order shown.
    results : dict or None
        ``results.json["sets"]`` as stored ({test set: {"wer", "cer", "utterances", ...}}),
        None when the run wrote none (a pretraining run, or a fine-tuning run not yet scored).
    results_file : Path or None
        Where `results` came from.
    notes : list of str
        Caveats (a results file scored on another checkpoint, an unreadable file).
    """

    hparams_file: Path
    facts: list[tuple[str, str]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] | None = None
    results_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """The run's output folder."""
        return self.hparams_file.parent


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _text(value: Any) -> str:
    """A hyperparameter as the card shows it: lists joined, `!tag:target` nodes by target."""
    if isinstance(value, _Tagged):
        return value.tag.partition(":")[2] or value.tag
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    return str(value)


def _is_set(value: Any) -> bool:
    return value not in (None, "", [], {})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_yaml_file(path: Path) -> dict[str, Any]:
    """A small YAML file (CKPT.yaml, brain.ckpt) as a dict; {} when absent or unreadable."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except _READ_ERRORS:
        return {}
    return content if isinstance(content, dict) else {}


def _objective(values: Mapping[str, Any]) -> str | None:
    """The objective class a pretraining YAML builds, or the CTC builder of a fine-tuning one."""
    objective = values.get("objective")
    if isinstance(objective, _Tagged):
        return f"`{_text(objective)}`"
    model = values.get("ctc_model")
    if isinstance(model, _Tagged):
        return f"CTC fine-tuning (`{_text(model)}`)"
    return None


def _run_facts(values: Mapping[str, Any], checkpoint_folder: Path | None) -> list[tuple[str, str]]:
    facts = []
    objective = _objective(values)
    if objective is not None:
        facts.append(("objective", objective))
    for label, keys in RUN_FIELDS:
        key = next((key for key in keys if _is_set(values.get(key))), None)
        if key is not None:
            facts.append((label, f"`{key}`: {_text(values[key])}"))
    if checkpoint_folder is None:
        return facts
    steps = _read_yaml_file(checkpoint_folder / BRAIN_STATE_FILE).get("optimizer_step")
    if isinstance(steps, int) and not isinstance(steps, bool):
        where = f"{checkpoint_folder.name}/{BRAIN_STATE_FILE}"
        facts.append(("updates done", f"{steps} (`optimizer_step` of {where})"))
    meta = _read_yaml_file(checkpoint_folder / CKPT_META_FILE)
    dev = [f"{name} {meta[name]:.4g}" for name in DEV_METRICS if _is_number(meta.get(name))]
    if dev:
        facts.append(("dev scores of this checkpoint", ", ".join(dev)))
    return facts


def _scored_folder(save_folder: Path, metric: str) -> Path | None:
    """The checkpoint the recipe restores to score: the lowest `metric` in CKPT.yaml."""
    scored = []
    for folder in complete_checkpoint_folders(save_folder):
        value = _read_yaml_file(folder / CKPT_META_FILE).get(metric)
        if _is_number(value):
            scored.append((float(value), folder))
    return min(scored, key=lambda pair: pair[0])[1] if scored else None


def _read_results(run: TrainingRun, values: Mapping[str, Any], checkpoint: Path | None) -> None:
    """Fill `run.results` from the output folder's results.json (test sets of fine-tuning)."""
    path = run.folder / RESULTS_FILE
    if not path.is_file():
        return
    try:
        sets = json.loads(path.read_text(encoding="utf-8"))["sets"]
        if not isinstance(sets, dict):
            raise TypeError(f"'sets' is a {type(sets).__name__}, not a mapping")
    except _READ_ERRORS as error:
        run.notes.append(f"{path} could not be read ({_one_line(error)})")
        return
    run.results, run.results_file = sets, path
    metric = str(values.get("best_checkpoint_metric") or "WER")
    if checkpoint is not None:
        scored = _scored_folder(checkpoint.parent, metric)
        if scored is not None and scored.resolve() != checkpoint.resolve():
            run.notes.append(
                f"{RESULTS_FILE} scores {scored.name} (the lowest dev {metric}); this export is "
                f"{checkpoint.name}"
            )


def read_training_run(checkpoint_file: str | Path) -> TrainingRun | None:
    """The run behind `checkpoint_file` (a `CKPT+*` folder's file, the folder, or a run folder),
    or None when no ``hyperparams.yaml`` sits in it or up to four folders above."""
    path = Path(checkpoint_file).resolve()
    folders = ([path] if path.is_dir() else []) + list(path.parents)[:4]
    hparams_file = next(
        (folder / RECIPE_HPARAMS_FILE for folder in folders
         if (folder / RECIPE_HPARAMS_FILE).is_file()),
        None,
    )  # fmt: skip
    if hparams_file is None:
        return None
    run = TrainingRun(hparams_file)
    try:
        values = read_hparams_mapping(hparams_file)
    except (CheckpointError, *_READ_ERRORS) as error:
        run.notes.append(f"{hparams_file} could not be read ({_one_line(error)})")
        return run
    checkpoint = next((f for f in folders if f.name.startswith(CKPT_FOLDER_PREFIX)), None)
    run.facts = _run_facts(values, checkpoint)
    _read_results(run, values, checkpoint)
    return run
