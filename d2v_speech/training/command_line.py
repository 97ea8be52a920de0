"""Recipe command lines: SpeechBrain's ``parse_arguments`` with the run options a YAML also names
kept in step with it, and the configuration checked before any work starts.

SpeechBrain takes ``--optimizer_step_limit``, ``--precision``, ``--max_grad_norm`` ... as run
options: they reach the Brain but never the YAML, so a YAML whose schedules refer to
``<optimizer_step_limit>`` (the learning-rate cosine, the EMA anneal, the Gumbel temperature)
would stop at the command line's update count with schedules sized for its own. Here such an
option, when given on the command line and also a top-level key of the YAML, is added to the
YAML overrides as well, so the Brain, the schedules and the saved ``hyperparams.yaml`` agree.

Before any work: an override that names no key of the YAML, or a top-level YAML key that looks
like a misspelt SpeechBrain run option (``precison: bf16``), stops with a message naming it
and the closest known name; :func:`check_hparams` checks the common values (learning rate,
probabilities, lengths, update counts, precision) for type and range.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import speechbrain as sb
import yaml
from speechbrain.utils.run_opts import RunOptions

from d2v_speech.training.recipe_yaml import expanded_recipe_file

__all__ = ["check_hparams", "parse_recipe_arguments", "top_level_keys"]

RUN_OPTIONS = frozenset(
    name
    for name in dir(RunOptions)
    if not name.startswith("_") and not callable(getattr(RunOptions, name))
) | {"distributed_backend", "device", "precision", "noprogressbar"}
PRECISIONS = ("fp32", "fp16", "bf16")
# key -> (check, what it must be)
_POSITIVE = (lambda v: _number(v) and v > 0, "a number > 0")
_NONNEGATIVE = (lambda v: _number(v) and v >= 0, "a number >= 0")
_PROBABILITY = (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]")
_PROBABILITY_BELOW_ONE = (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
_POSITIVE_INT = (
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    "an integer > 0",
)
_NONNEGATIVE_INT = (
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "an integer >= 0",
)
VALUE_CHECKS: dict[str, tuple] = {
    "lr": _POSITIVE,
    "max_grad_norm": _POSITIVE,
    "max_batch_seconds": _POSITIVE,
    "min_duration": _NONNEGATIVE,
    "max_crop_samples": _POSITIVE_INT,
    "mask_prob": _PROBABILITY_BELOW_ONE,
    "mask_channel_prob": _PROBABILITY_BELOW_ONE,
    "layerdrop": _PROBABILITY,
    "mask_length": _POSITIVE_INT,
    "mask_channel_length": _POSITIVE_INT,
    "optimizer_step_limit": _POSITIVE_INT,
    "max_update": _POSITIVE_INT,
    "number_of_epochs": _POSITIVE_INT,
    "grad_accumulation_factor": _POSITIVE_INT,
    "max_batch_utterances": _POSITIVE_INT,
    "seed": _NONNEGATIVE_INT,
    "ema_decay": _PROBABILITY,
    "ema_end_decay": _PROBABILITY,
    "variance_floor": _NONNEGATIVE,
    "variance_weight": _NONNEGATIVE,
    "diversity_weight": _NONNEGATIVE,
    "feature_penalty_weight": _NONNEGATIVE,
    "max_unreadable_files": _NONNEGATIVE_INT,
    "heap_mmap_threshold_mib": _NONNEGATIVE,
    "heap_keep_large_blocks": (lambda v: isinstance(v, bool), "True or False"),
    "precision": (lambda v: v in PRECISIONS, f"one of {PRECISIONS}"),
}


class ConfigurationError(ValueError):
    """A recipe's YAML or command line names an unknown key or a value out of range."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _closest(name: str, known) -> str:
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


def top_level_keys(yaml_path: str | Path) -> set[str]:
    """Names of the top-level keys of a (hyperpyyaml) file, read without building anything."""
    text = Path(yaml_path).read_text(encoding="utf-8")
    return {match.group(1) for line in text.splitlines() if (match := _TOP_LEVEL_KEY.match(line))}


def parse_recipe_arguments(argv: list[str]) -> tuple[str, object, str]:
    """(hparams file, SpeechBrain RunOptions, YAML overrides) of a recipe's command line.

    The hparams file is the given one, or the expansion of a YAML that derives from another
    (``base_yaml``, :mod:`d2v_speech.training.recipe_yaml`).

    The overrides also hold every run option given on the command line that the YAML defines at
    its top level (``optimizer_step_limit: 6127`` for ``--optimizer_step_limit=6127``).

    Example
    -------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    ...     _ = f.write("optimizer_step_limit: 2000\\nwarmup: !ref <optimizer_step_limit> // 50\\n")
    >>> _, run_opts, overrides = parse_recipe_arguments([f.name, "--optimizer_step_limit=600"])
    >>> overrides
    'optimizer_step_limit: 600'
    """
    given_file, run_opts, overrides = sb.parse_arguments(argv)
    # a YAML derived from another (base_yaml) is handed on expanded, a complete recipe YAML
    hparams_file = expanded_recipe_file(given_file)
    keys = top_level_keys(hparams_file)
    _check_names(given_file, keys, overrides)
    mirrored = [
        f"{name}: {run_opts[name]}"
        for name in sorted(run_opts.overridden_args)
        if name in keys and run_opts[name] is not None
    ]
    if mirrored:
        overrides = "\n".join(part for part in (overrides.strip(), *mirrored) if part)
    return hparams_file, run_opts, overrides


def _check_names(hparams_file: str, keys: set[str], overrides: str) -> None:
    """Unknown overrides and misspelt run options in the YAML are errors, before any work."""
    given = yaml.safe_load(overrides) if overrides and overrides.strip() else {}
    for name, value in (given or {}).items():
        if name not in keys:
            raise ConfigurationError(
                f"--{name}: not a key of {hparams_file} nor a SpeechBrain run option"
                + _closest(name, keys | RUN_OPTIONS)
            )
        check_hparams({name: value}, f"--{name}={value}")  # before the YAML builds anything
    for name in sorted(keys - RUN_OPTIONS):
        near = difflib.get_close_matches(name, sorted(RUN_OPTIONS), n=1, cutoff=0.85)
        if near and near[0] not in keys:
            raise ConfigurationError(
                f"{hparams_file}: top-level key '{name}' is read by nothing; did you mean "
                f"the run option '{near[0]}'?"
            )


def check_hparams(hparams: Mapping[str, Any], source: str) -> None:
    """Check the type and range of the common top-level values (:data:`VALUE_CHECKS`) of a
    loaded YAML; ``source`` (the YAML's path) is named in the error."""
    for key, value in hparams.items():
        if key not in VALUE_CHECKS or value is None:
            continue
        valid, expected = VALUE_CHECKS[key]
        if not valid(value):
            raise ConfigurationError(f"{source}: {key} must be {expected}, got {value!r}")
