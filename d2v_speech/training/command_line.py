"""Recipe command lines: SpeechBrain's ``parse_arguments`` with the run options a YAML also names
kept in step with it.

SpeechBrain takes ``--optimizer_step_limit``, ``--precision``, ``--max_grad_norm`` ... as run
options: they reach the Brain but never the YAML, so a YAML whose schedules refer to
``<optimizer_step_limit>`` (the learning-rate cosine, the EMA anneal, the Gumbel temperature)
would stop at the command line's update count with schedules sized for its own. Here such an
option, when given on the command line and also a top-level key of the YAML, is added to the
YAML overrides as well, so the Brain, the schedules and the saved ``hyperparams.yaml`` agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import speechbrain as sb

__all__ = ["parse_recipe_arguments", "top_level_keys"]

_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


def top_level_keys(yaml_path: str | Path) -> set[str]:
    """Names of the top-level keys of a (hyperpyyaml) file, read without building anything."""
    text = Path(yaml_path).read_text(encoding="utf-8")
    return {match.group(1) for line in text.splitlines() if (match := _TOP_LEVEL_KEY.match(line))}


def parse_recipe_arguments(argv: list[str]) -> tuple[str, object, str]:
    """(hparams file, SpeechBrain RunOptions, YAML overrides) of a recipe's command line.

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
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    keys = top_level_keys(hparams_file)
    mirrored = [
        f"{name}: {run_opts[name]}"
        for name in sorted(run_opts.overridden_args)
        if name in keys and run_opts[name] is not None
    ]
    if mirrored:
        overrides = "\n".join(part for part in (overrides.strip(), *mirrored) if part)
    return hparams_file, run_opts, overrides
