"""Run options given on a recipe's command line reach the YAML's references too."""

from pathlib import Path

from hyperpyyaml import load_hyperpyyaml

from d2v_speech.training.command_line import parse_recipe_arguments, top_level_keys
from d2v_speech.training.recipe_yaml import expand_recipe_yaml

ROOT = Path(__file__).resolve().parents[2]


def load(argv):
    hparams_file, run_opts, overrides = parse_recipe_arguments(argv)
    with open(hparams_file, encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, overrides), run_opts, overrides


def test_the_update_limit_sizes_the_schedules_it_ends():
    yaml = str(ROOT / "hparams/tiny/data2vec2.yaml")
    hparams, run_opts, overrides = load(
        [yaml, "--optimizer_step_limit=600", "--precision=bf16", "--device=cpu", "--lr=0.002"]
    )
    assert int(run_opts["optimizer_step_limit"]) == 600  # the Brain stops there ...
    assert hparams["optimizer_step_limit"] == 600  # ... and the YAML's schedules end there
    assert hparams["lr_scheduler"].total_steps == 600
    assert hparams["lr_scheduler"].warmup_steps == 600 // 50
    assert hparams["lr_scheduler"].lr == 0.002  # plain overrides still apply
    assert hparams["precision"] == "bf16"
    assert "device" not in overrides  # a run option the YAML does not name stays a run option


def test_without_run_options_the_overrides_are_speechbrains():
    yaml = str(ROOT / "hparams/tiny/aqc.yaml")
    hparams, _, overrides = load([yaml, "--seed=7"])
    assert overrides.strip() == "seed: 7"
    assert hparams["optimizer_step_limit"] == 2000
    # the tiny aqc YAML states its Gumbel schedule as a fraction of the run
    hparams, _, _ = load([yaml, "--optimizer_step_limit=1000"])
    decay = hparams["objective"].quantizer_settings.temperature[2]
    assert abs(2.0 * decay ** (0.69 * 1000) - 0.5) < 1e-9


def test_top_level_keys_skip_nested_and_commented_lines(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n# b: 2\nc:\n    d: 3\n  e: 4\nf_1 : !ref <a>\n")
    assert top_level_keys(path) == {"a", "c", "f_1"}


def test_unknown_overrides_and_bad_values_stop_before_any_work():
    import pytest

    from d2v_speech.training.command_line import ConfigurationError

    finetune = str(ROOT / "hparams/tiny/finetune_ctc.yaml")
    with pytest.raises(ConfigurationError, match="--lrr: not a key .*did you mean lr\\?"):
        load([finetune, "--pretrained=none", "--lrr=0.1"])
    with pytest.raises(ConfigurationError, match="lr must be a number > 0, got 'abc'"):
        load([finetune, "--pretrained=none", "--lr=abc"])
    with pytest.raises(ConfigurationError, match="mask_prob must be a number in \\[0, 1\\)"):
        load([finetune, "--pretrained=none", "--mask_prob=1.5"])


def test_a_misspelt_run_option_in_the_yaml_is_an_error(tmp_path):
    import pytest

    from d2v_speech.training.command_line import ConfigurationError

    text = expand_recipe_yaml(ROOT / "hparams/tiny/aqc2.yaml")
    text = text.replace("\nprecision:", "\nprecison:")
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match="'precison' is read by nothing; did you mean"):
        parse_recipe_arguments([str(path)])
