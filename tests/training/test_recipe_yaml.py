"""Derived recipe YAMLs (base_yaml): the expansion rules, the errors, and the tiny YAMLs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml.comments import CommentedMap

from d2v_speech.training.recipe_yaml import (
    RecipeYamlError,
    _round_trip,
    _tag,
    expand_recipe_yaml,
    expanded_recipe_file,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = """\
# the base's opening comment
seed: 3
steps: 10
optimizer_step_limit: 100
table: {a: 1, b: 2}
optimizer: !name:torch.optim.SGD
    lr: 0.1
    momentum: 0.9
layer: !new:torch.nn.Linear
    in_features: 4
    out_features: !ref <steps>
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_expansion_rules(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    (tmp_path / "tiny").mkdir()
    derived = write(
        tmp_path / "tiny",
        "small.yaml",
        "# the derived file's comment\nbase_yaml: ../base.yaml\n"
        "steps: 2                     # scalars replace\n"
        "width: !ref <steps> * 2      # a new key lands after the key it follows\n"
        "table: {a: 5}                # a plain table replaces whole\n"
        "optimizer: !name:torch.optim.SGD\n"
        "    lr: 0.5                   # same tag: this argument only\n"
        "layer: !new:torch.nn.Bilinear  # another class: replaced whole\n"
        "    in1_features: 1\n    in2_features: 1\n    out_features: !ref <width>\n",
    )  # fmt: skip
    text = expand_recipe_yaml(derived)
    assert text.startswith("# the derived file's comment\n")
    order = ["seed", "steps", "width", "optimizer_step_limit", "table", "optimizer", "layer"]
    assert list(_round_trip().load(text)) == order
    hparams = load_hyperpyyaml(text)
    assert hparams["steps"] == 2 and hparams["width"] == 4
    assert hparams["table"] == {"a": 5}
    optimizer = hparams["optimizer"]([torch.nn.Parameter(torch.ones(1))])
    assert optimizer.defaults["lr"] == 0.5 and optimizer.defaults["momentum"] == 0.9
    assert type(hparams["layer"]).__name__ == "Bilinear" and hparams["layer"].out_features == 4
    # a chain: a YAML derived from the derived one
    grandchild = write(tmp_path, "micro.yaml", "base_yaml: tiny/small.yaml\nseed: 9\n")
    assert load_hyperpyyaml(expand_recipe_yaml(grandchild))["width"] == 4
    # a file without base_yaml is handed on as it is; a derived one as a complete expansion
    assert expanded_recipe_file(tmp_path / "base.yaml") == str(tmp_path / "base.yaml")
    expanded = Path(expanded_recipe_file(derived))
    assert expanded != derived and str(derived.resolve()) in expanded.read_text().splitlines()[0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("base_yaml: missing.yaml\n", "base_yaml missing.yaml not found"),
        ("base_yaml: base.yaml\noptimizer_step_limt: 3\n", "did you mean 'optimizer_step_limit'"),
        ("base_yaml: loop.yaml\n", "deeper than"),
        ("base_yaml: [base.yaml]\n", "must be a path"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, text, message):
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "loop.yaml", "base_yaml: loop.yaml\n")
    path = write(tmp_path, "derived.yaml", text)
    with pytest.raises(RecipeYamlError, match=message) as error:
        expand_recipe_yaml(path)
    assert "derived.yaml" in str(error.value) or "loop.yaml" in str(error.value)


def _plain(node):
    """A comparable form of a round-trip YAML node: tags kept, comments and styles dropped."""
    if isinstance(node, CommentedMap):
        return _tag(node), {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return _tag(node), [_plain(value) for value in node]
    return _tag(node), str(node)


def _restated(base: CommentedMap, derived: CommentedMap, where: str) -> list[str]:
    """Keys of ``derived`` whose value equals the base's (they should not be in it)."""
    found = []
    for key, value in derived.items():
        if key == "base_yaml" or key not in base:
            continue
        old = base[key]
        if _plain(old) == _plain(value):
            found.append(f"{where}{key}")
        elif isinstance(value, CommentedMap) and _tag(value) and _tag(value) == _tag(old):
            found += _restated(old, value, f"{where}{key}.")
    return found


DERIVED = sorted(
    path for path in (ROOT / "hparams").rglob("*.yaml") if "base_yaml:" in path.read_text()
)


def test_the_tiny_yamls_derive_from_their_base():
    names = {path.relative_to(ROOT / "hparams").as_posix() for path in DERIVED}
    for name in ("aqc", "aqc2", "data2vec", "data2vec2", "finetune_ctc", "switchboard_ctc"):
        assert f"tiny/{name}.yaml" in names


@pytest.mark.parametrize("path", DERIVED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_derived_yaml_states_only_what_differs(path):
    derived = _round_trip().load(path.read_text(encoding="utf-8"))
    base_path = path.parent / derived["base_yaml"]
    base = _round_trip().load(expand_recipe_yaml(base_path))
    assert _restated(base, derived, "") == [], f"{path}: these keys repeat {base_path}"
