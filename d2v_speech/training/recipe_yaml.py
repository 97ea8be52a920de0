"""Recipe YAMLs that state only how they differ from another: ``base_yaml`` expansion.

A recipe YAML may start with ``base_yaml: ../aqc.yaml`` (a path relative to its own folder):
it is then that file with the keys given here replaced. The arguments of a class or function
given with the base's tag (``!new:``, ``!name:``, ``!apply:``) replace only the arguments they
name; anything else (a scalar, a list, a plain table such as ``split_settings``, another tag)
replaces the base's value whole. Keys the base lacks are added after the key they follow in the
derived file. Bases may derive from bases. Expansion works on the YAML text (tags, ``!ref`` and
comments kept, nothing is built), so hyperpyyaml then loads the result as any recipe YAML, and a
run's saved ``hyperparams.yaml`` is complete on its own.

    base_yaml: ../aqc.yaml            # hparams/tiny/aqc.yaml
    model_preset: hparams/model/tiny.yaml
    objective: !new:d2v_speech.ssl.aqc.AQCObjective
        teacher: !new:d2v_speech.ssl.ema.EMATeacherSettings
            decay_start: 0.99         # only this argument of the base's teacher changes

``expanded_recipe_file`` gives the recipes a path they can hand to SpeechBrain as usual: the
file itself, or for a derived file its expansion, written once (content-addressed) under the
temporary directory with the source named in its first lines.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import tempfile
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

__all__ = ["BASE_KEY", "RecipeYamlError", "expand_recipe_yaml", "expanded_recipe_file"]

BASE_KEY = "base_yaml"
MAX_DEPTH = 8  # chains of bases deeper than this are a cycle in practice


class RecipeYamlError(ValueError):
    """A recipe YAML whose ``base_yaml`` cannot be expanded (the message names the file)."""


def _round_trip() -> YAML:
    yaml = YAML()  # round trip: tags, !ref strings, key order and comments survive
    yaml.width = 4096
    yaml.indent(mapping=4, sequence=4, offset=2)
    return yaml


def _tag(node) -> str | None:
    tag = getattr(node, "tag", None)
    return None if tag is None else tag.value


def _merge(base: CommentedMap, derived: CommentedMap) -> None:
    """Write ``derived``'s keys into ``base`` (in place), recursing into mappings of one tag.

    An existing key keeps its place (objects build in document order); a new key goes right
    after the key it follows in ``derived`` (hyperpyyaml resolves ``!ref`` in document order, so
    a new key must come before the keys that refer to it).
    """
    position = -1
    for key, value in derived.items():
        old = base.get(key)
        if key not in base:
            position += 1
            base.insert(position, key, value)
        elif (
            isinstance(old, CommentedMap)
            and isinstance(value, CommentedMap)
            and _tag(value) is not None
            and _tag(old) == _tag(value)
        ):
            _merge(old, value)  # the arguments of the same class or function
        else:
            base[key] = value
        position = list(base).index(key)
        # the derived file's comment on this key replaces the base's (which may describe the
        # base's value)
        base.ca.items.pop(key, None)
        if key in derived.ca.items:
            base.ca.items[key] = derived.ca.items[key]


def _load_tree(path: Path, depth: int) -> CommentedMap:
    if depth > MAX_DEPTH:
        raise RecipeYamlError(f"{path}: {BASE_KEY} chain deeper than {MAX_DEPTH} (a cycle?)")
    try:
        tree = _round_trip().load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RecipeYamlError(f"{path}: cannot read ({error.strerror})") from error
    if not isinstance(tree, CommentedMap):
        raise RecipeYamlError(f"{path}: not a mapping of hyperparameters")
    if BASE_KEY not in tree:
        return tree
    base_name = tree.pop(BASE_KEY)
    if not isinstance(base_name, str):
        raise RecipeYamlError(f"{path}: {BASE_KEY} must be a path, got {base_name!r}")
    base_path = (path.parent / base_name).resolve()
    if not base_path.is_file():
        raise RecipeYamlError(f"{path}: {BASE_KEY} {base_name} not found (looked at {base_path})")
    base = _load_tree(base_path, depth + 1)
    for key in tree:
        near = difflib.get_close_matches(str(key), [str(k) for k in base], n=1, cutoff=0.9)
        if key not in base and near:
            raise RecipeYamlError(
                f"{path}: '{key}' is not a key of its base {base_name} (it would be added, not "
                f"replace one); did you mean '{near[0]}'?"
            )
    _merge(base, tree)
    base.ca.comment = tree.ca.comment  # the file's own opening comment, not its base's
    return base


def expand_recipe_yaml(path: str | Path) -> str:
    """The YAML text of ``path`` with its ``base_yaml`` chain expanded (unchanged without one).

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("lr: 0.1\\nsteps: 10\\nopt: !name:torch.optim.Adam\\n"
    ...                                       "    lr: !ref <lr>\\n    eps: 1.0e-8\\n")
    >>> _ = (folder / "small.yaml").write_text("base_yaml: base.yaml\\nsteps: 2\\n"
    ...                                        "opt: !name:torch.optim.Adam\\n    eps: 1.0e-6\\n")
    >>> print(expand_recipe_yaml(folder / "small.yaml"))
    lr: 0.1
    steps: 2
    opt: !name:torch.optim.Adam
        lr: !ref <lr>
        eps: 1.0e-6
    <BLANKLINE>
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if not any(line.startswith(f"{BASE_KEY}:") for line in text.splitlines()):
        return text
    out = io.StringIO()
    _round_trip().dump(_load_tree(path.resolve(), 0), out)
    return out.getvalue()


def expanded_recipe_file(path: str | Path) -> str:
    """A path SpeechBrain can load: ``path`` itself, or the expansion of a derived YAML."""
    text = expand_recipe_yaml(path)
    if text == Path(path).read_text(encoding="utf-8"):
        return str(path)
    header = f"# {Path(path).resolve()} with its {BASE_KEY} chain expanded (d2v_speech)\n"
    body = header + text
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / "d2v_speech_yaml"
    folder.mkdir(exist_ok=True)
    target = folder / f"{Path(path).stem}.{digest}.yaml"
    if not target.is_file():  # content-addressed: concurrent runs write the same bytes
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(body, encoding="utf-8")
        partial.replace(target)
    return str(target)
