"""Warm start of pretraining objectives from fairseq, Hugging Face and our own checkpoints."""

import re

import pytest
import torch
import yaml
from fairseq_layout import to_fairseq_key
from speechbrain.utils.checkpoints import Checkpointer
from transformers import Data2VecAudioConfig, Data2VecAudioModel as HFData2VecAudioModel

from d2v_speech.checkpoints import CheckpointError, LoadedCheckpoint
from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.training.warm_start import (
    quantizer_update_offset,
    should_warm_start,
    warm_start_objective,
    warm_start_unless_resuming,
)

CONV = [(24, 8, 4), (24, 4, 2), (20, 2, 2)]
HIDDEN, LAYERS, HEADS, FFN, DEPTH, KERNEL, GROUPS = 48, 2, 6, 96, 2, 5, 8
SOURCE_UPDATES = 100_000
TEMPERATURE = (2.0, 0.5, 0.999995)
EMA = {"ema_decay": 0.999, "ema_end_decay": 0.9999, "ema_anneal_end_step": 30_000}

FAIRSEQ_MODEL_CFG = {
    "extractor_mode": "layer_norm",
    "conv_feature_layers": "[(24, 8, 4), (24, 4, 2), (20, 2, 2)]",
    "conv_bias": True,
    "encoder_embed_dim": HIDDEN,
    "encoder_layers": LAYERS,
    "encoder_attention_heads": HEADS,
    "encoder_ffn_embed_dim": FFN,
    "pos_conv_depth": DEPTH,
    "conv_pos": KERNEL * DEPTH,
    "conv_pos_groups": GROUPS,
    "layer_norm_first": False,
}
# aqc heads for latent_vars=8, latent_groups=2, final_dim=8 on a 20-channel CNN
AQC_HEAD_SHAPES = {
    "quantizer.vars": (1, 16, 4),
    "quantizer.weight_proj.weight": (16, 20),
    "quantizer.weight_proj.bias": (16,),
    "project_q.weight": (8, 8),
    "project_q.bias": (8,),
    "final_proj.weight": (HIDDEN, HIDDEN),
    "final_proj.bias": (HIDDEN,),
    "contr_proj.weight": (8, HIDDEN),
    "contr_proj.bias": (8,),
}


def encoder_config(**overrides):
    values = {
        "conv_layers": CONV,
        "conv_bias": True,
        "embed_dim": HIDDEN,
        "num_layers": LAYERS,
        "num_heads": HEADS,
        "ffn_dim": FFN,
        "pos_conv_depth": DEPTH,
        "pos_conv_kernel": KERNEL,
        "pos_conv_groups": GROUPS,
        "layerdrop": 0.0,
        **overrides,
    }
    return EncoderConfig(**values)


def aqc_objective(latent_vars=8, **config_overrides):
    torch.manual_seed(11)
    model = Data2VecAudioModel(encoder_config(**config_overrides))
    return AQCObjective(
        model,
        latent_vars=latent_vars,
        latent_groups=2,
        final_dim=8,
        average_top_k_layers=2,
        latent_temperature=TEMPERATURE,
        **EMA,
    )


def temperature_after(updates):
    start, end, decay = TEMPERATURE
    return max(start * decay**updates, end)


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = Data2VecAudioConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        conv_dim=[c for c, _, _ in CONV],
        conv_kernel=[k for _, k, _ in CONV],
        conv_stride=[s for _, _, s in CONV],
        conv_bias=True,
        num_conv_pos_embeddings=DEPTH,
        conv_pos_kernel_size=KERNEL,
        num_conv_pos_embedding_groups=GROUPS,
    )
    model = HFData2VecAudioModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module")
def fairseq_aqc(hf_model, tmp_path_factory):
    """(path, student HF state, heads by fairseq key) of a data2vec-aqc pretraining .pt."""
    student = {k: v.clone() for k, v in hf_model.state_dict().items()}
    generator = torch.Generator().manual_seed(5)
    heads = {k: torch.randn(shape, generator=generator) for k, shape in AQC_HEAD_SHAPES.items()}
    state = {to_fairseq_key(k): v for k, v in student.items()}
    state.update(heads)
    state["_ema"] = {
        key[len("encoder.") :]: value + 1.0
        for key, value in state.items()
        if key.startswith("encoder.") and not key.startswith("encoder.pos_conv.")
    }
    path = tmp_path_factory.mktemp("fairseq") / "aqc.pt"
    torch.save(
        {
            "cfg": {"model": FAIRSEQ_MODEL_CFG, "task": {"normalize": True}},
            "model": state,
            "optimizer_history": [{"num_updates": SOURCE_UPDATES}],
        },
        path,
    )
    return path, student, heads


def assert_state_equal(module, expected):
    state = module.state_dict()
    state.pop("_extra_state", None)
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


# ------------------------------------------------------------------------------- fairseq
def test_fairseq_aqc_warm_start_keeps_teacher_and_schedules(fairseq_aqc):
    path, student, heads = fairseq_aqc
    objective = aqc_objective()
    report = warm_start_objective(objective, path)
    assert_state_equal(objective.model, student)
    for key, value in heads.items():
        name, local = key.split(".", 1)
        assert torch.equal(getattr(objective, name).state_dict()[local], value), key
    for key, value in objective.teacher.model.state_dict().items():
        student_value = student["encoder." + key]
        # pos_conv is copied from the student, not averaged, so fairseq's _ema lacks it
        offset = 0.0 if key.startswith("pos_conv_embed.") else 1.0
        assert torch.equal(value, student_value + offset), key
    assert objective.teacher.num_updates == SOURCE_UPDATES
    assert objective.teacher.decay == EMA["ema_end_decay"]
    assert objective.quantizer.num_updates == SOURCE_UPDATES
    assert objective.quantizer.temperature == pytest.approx(temperature_after(SOURCE_UPDATES))
    assert report["teacher"] == "checkpoint_ema" and report["source_normalize"] is True
    assert sorted(report["heads_loaded"]) == ["contr_proj", "final_proj", "project_q", "quantizer"]
    assert report["reset"] == ["lr_schedule", "optimizer"]
    assert report["ema_schedule"] == report["quantizer_schedule"] == "kept"
    # the Brain starts at update 0: the temperature must continue from the source's count
    assert quantizer_update_offset(objective, 0) == SOURCE_UPDATES


def test_fairseq_warm_start_with_every_schedule_restarted(fairseq_aqc):
    path, student, _ = fairseq_aqc
    objective = aqc_objective()
    report = warm_start_objective(
        objective,
        path,
        reset=["optimizer", "ema_schedule", "quantizer_temperature"],
        teacher="copy_student",
    )
    teacher = objective.teacher.model.state_dict()
    assert all(
        torch.equal(teacher[k[len("encoder.") :]], v)
        for k, v in student.items()
        if k.startswith("encoder.")
    )
    assert objective.teacher.num_updates == 0 and objective.teacher.decay == EMA["ema_decay"]
    assert objective.quantizer.num_updates == 0
    assert objective.quantizer.temperature == TEMPERATURE[0]
    assert report["teacher"] == "copy_of_student"
    assert quantizer_update_offset(objective, 0) == 0


def test_data2vec_objective_ignores_aqc_heads(fairseq_aqc):
    path, student, heads = fairseq_aqc
    torch.manual_seed(3)
    objective = Data2VecObjective(
        Data2VecAudioModel(encoder_config()), average_top_k_layers=2, **EMA
    )
    report = warm_start_objective(objective, path, load_heads=True)
    assert_state_equal(objective.model, student)
    assert torch.equal(objective.final_proj.weight, heads["final_proj.weight"])
    assert sorted(report["heads_unused"]) == ["contr_proj", "project_q", "quantizer"]
    assert "quantizer_schedule" not in report


# ------------------------------------------------------------------------------- Hugging Face
def test_hf_directory_warm_start_copies_student_into_teacher(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path / "hf")
    objective = aqc_objective()
    fresh_heads = {
        name: {k: v.clone() for k, v in getattr(objective, name).state_dict().items()}
        for name in ("final_proj", "project_q", "contr_proj")
    }
    report = warm_start_objective(objective, tmp_path / "hf")
    student = hf_model.state_dict()
    assert_state_equal(objective.model, student)
    teacher = objective.teacher.model.state_dict()
    assert all(
        torch.equal(teacher[k[len("encoder.") :]], v)
        for k, v in student.items()
        if k.startswith("encoder.")
    )
    for name, state in fresh_heads.items():
        assert_state_equal(getattr(objective, name), state)
    assert report["teacher"] == "copy_of_student"
    assert report["ema_schedule"].startswith("restarted") and objective.teacher.num_updates == 0
    assert report["quantizer_schedule"] == "restarted (the quantizer was not loaded)"
    assert objective.quantizer.temperature == TEMPERATURE[0]


# ------------------------------------------------------------------------------- ours
def test_warm_start_from_our_recipe_output(tmp_path):
    source = aqc_objective()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(torch.rand_like(parameter))
    source.teacher.model.load_state_dict(
        {k: v * 2.0 for k, v in source.model.encoder.state_dict().items()}
    )
    source.teacher.num_updates = 50
    source.quantizer.set_num_updates(1234)
    out = tmp_path / "run"
    ckpt = out / "save" / "CKPT+2024-03-03+00-00-00+00"
    ckpt.mkdir(parents=True)
    torch.save(source.state_dict(), ckpt / "objective.ckpt")
    (ckpt / "CKPT.yaml").write_text("unixtime: 1.0\n")
    fields = yaml.safe_dump(encoder_config().to_dict(), default_flow_style=True)
    (out / "hyperparams.yaml").write_text(
        f"model_config: !new:d2v_speech.nn.config.EncoderConfig {fields}"
    )
    target = aqc_objective()
    report = warm_start_objective(target, out)
    for name in ("model", "final_proj", "quantizer", "project_q", "contr_proj"):
        expected = getattr(source, name).state_dict()
        expected.pop("_extra_state", None)
        assert_state_equal(getattr(target, name), expected)
    assert_state_equal(target.teacher.model, source.teacher.model.state_dict())
    # each schedule continues from its own saved count
    assert target.teacher.num_updates == 50
    assert target.quantizer.num_updates == 1234
    assert target.quantizer.temperature == pytest.approx(temperature_after(1234))
    assert report["source_format"] == "d2v_speech_recipe"
    assert quantizer_update_offset(target, 0) == 1234
    # after a resume both counts come back from the same checkpoint: the offset is unchanged
    target.quantizer.set_num_updates(1234 + 10)
    assert quantizer_update_offset(target, 10) == 1234


# ------------------------------------------------------------------------------- mismatches
def test_architecture_mismatch_names_the_field(fairseq_aqc):
    path, _, _ = fairseq_aqc
    with pytest.raises(CheckpointError, match="num_heads: checkpoint 6 vs objective 4"):
        warm_start_objective(aqc_objective(num_heads=4), path)
    with pytest.raises(CheckpointError, match="layer_norm_first: checkpoint False vs objective"):
        warm_start_objective(aqc_objective(layer_norm_first=True), path)
    with pytest.raises(CheckpointError, match="alibi: checkpoint False vs objective True"):
        warm_start_objective(aqc_objective(alibi=True), path)


def test_misshaped_encoder_key_is_named(hf_model):
    state = dict(hf_model.state_dict())
    state["encoder.layers.1.feed_forward.output_dense.bias"] = torch.zeros(HIDDEN + 1)
    source = LoadedCheckpoint(encoder_config(), state)
    with pytest.raises(
        CheckpointError,
        match=re.escape(f"output_dense.bias: checkpoint ({HIDDEN + 1},) vs model ({HIDDEN},)"),
    ):
        warm_start_objective(aqc_objective(), source)


def test_head_shape_mismatch_raises_or_keeps_fresh_head(fairseq_aqc):
    path, student, _ = fairseq_aqc
    with pytest.raises(CheckpointError, match=r"quantizer .*vars: checkpoint \(1, 16, 4\)"):
        warm_start_objective(aqc_objective(latent_vars=10), path)
    objective = aqc_objective(latent_vars=10)
    fresh = {k: v.detach().clone() for k, v in objective.quantizer.named_parameters()}
    report = warm_start_objective(objective, path, strict_shapes=False)
    assert_state_equal(objective.model, student)
    assert_state_equal(objective.quantizer, fresh)
    assert "vars" in report["heads_skipped"]["quantizer"]
    assert report["quantizer_schedule"] == "restarted (the quantizer was not loaded)"


def test_bad_options_are_rejected(fairseq_aqc):
    path, _, _ = fairseq_aqc
    with pytest.raises(ValueError, match="unknown reset option"):
        warm_start_objective(aqc_objective(), path, reset=["optimiser"])
    with pytest.raises(ValueError, match="not the string"):
        warm_start_objective(aqc_objective(), path, reset="optimizer")
    with pytest.raises(ValueError, match="teacher must be one of"):
        warm_start_objective(aqc_objective(), path, teacher="ema")


# ------------------------------------------------------------------------------- recipe hook
def test_should_warm_start_only_without_a_complete_checkpoint(tmp_path):
    assert should_warm_start(tmp_path / "missing")
    (tmp_path / "CKPT+interrupted").mkdir()
    assert should_warm_start(tmp_path)
    checkpointer = Checkpointer(tmp_path, recoverables={"layer": torch.nn.Linear(2, 2)})
    assert should_warm_start(checkpointer)
    checkpointer.save_checkpoint()
    assert not should_warm_start(checkpointer) and not should_warm_start(str(tmp_path))
    with pytest.raises(ValueError, match="needs a Checkpointer or a folder"):
        should_warm_start(None)


def test_warm_start_unless_resuming_runs_once(fairseq_aqc, tmp_path):
    path, student, _ = fairseq_aqc
    objective = aqc_objective()
    checkpointer = Checkpointer(tmp_path / "save", recoverables={"objective": objective})
    assert warm_start_unless_resuming(objective, checkpointer, None) is None
    reset = ["quantizer_temperature"]
    report = warm_start_unless_resuming(objective, checkpointer, str(path), reset=reset)
    assert report["quantizer_schedule"] == "restarted" and report["ema_schedule"] == "kept"
    assert_state_equal(objective.model, student)
    checkpointer.save_checkpoint()
    with torch.no_grad():
        objective.model.masked_spec_embed.zero_()
    assert warm_start_unless_resuming(objective, checkpointer, str(path), reset=reset) is None
    assert not objective.model.masked_spec_embed.any()
