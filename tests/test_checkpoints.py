"""Checkpoint import/export: Hugging Face directories, fairseq data2vec(-aqc) and native files."""

import argparse
import datetime
import json

import pytest
import torch
import yaml
from fairseq_layout import to_fairseq_key
from hyperpyyaml import resolve_references
from safetensors.torch import load_file
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioForCTC,
    Data2VecAudioModel as HFData2VecAudioModel,
)

from d2v_speech.checkpoints import (
    CheckpointError,
    LoadedCheckpoint,
    export_huggingface,
    load_checkpoint,
    load_encoder,
    main,
    parse_conv_feature_layers,
    save_native,
)
from d2v_speech.nn import DEFAULT_CONV_LAYERS, Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.data2vec import Data2VecObjective

CONV = [(24, 8, 4), (24, 4, 2), (20, 2, 2)]
HIDDEN, LAYERS, HEADS, FFN, DEPTH, KERNEL, GROUPS = 48, 2, 6, 96, 2, 5, 8
LENGTHS = [2000, 1200, 700]

# fairseq pretraining cfg of the same architecture (anchors_compat B.1 names), with keys we ignore
FAIRSEQ_MODEL_CFG = {
    "_name": "data2vec_audio",
    "extractor_mode": "layer_norm",
    "conv_feature_layers": "[(24, 8, 4)] + [(24, 4, 2)] * 1 + [(20, 2, 2)]",
    "conv_bias": True,
    "encoder_embed_dim": HIDDEN,
    "encoder_layers": LAYERS,
    "encoder_attention_heads": HEADS,
    "encoder_ffn_embed_dim": FFN,
    "pos_conv_depth": DEPTH,
    "conv_pos": KERNEL * DEPTH,  # fairseq kernel = max(3, conv_pos // depth)
    "conv_pos_groups": GROUPS,
    "layer_norm_first": False,
    "activation_fn": "gelu",
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "dropout_input": 0.0,
    "encoder_layerdrop": 0.05,
    "mask_prob": 0.65,
    "ema_decay": 0.999,
    "average_top_k_layers": 8,
    "cluster_factor": 16,
    "scale_factor": 0.3,
}
FAIRSEQ_TASK_CFG = {"_name": "audio_pretraining", "normalize": True, "data": "/nonexistent"}


def hf_config(**overrides):
    values = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "conv_dim": [c for c, _, _ in CONV],
        "conv_kernel": [k for _, k, _ in CONV],
        "conv_stride": [s for _, _, s in CONV],
        "conv_bias": True,
        "num_conv_pos_embeddings": DEPTH,
        "conv_pos_kernel_size": KERNEL,
        "num_conv_pos_embedding_groups": GROUPS,
    }
    values.update(overrides)
    return Data2VecAudioConfig(**values)


def perturbed(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    return perturbed(HFData2VecAudioModel(hf_config()))


@pytest.fixture(scope="module")
def hf_ctc_model():
    torch.manual_seed(0)
    return perturbed(Data2VecAudioForCTC(hf_config(vocab_size=10)), seed=1)


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(3)
    lengths = torch.tensor(LENGTHS)
    attention_mask = torch.arange(max(LENGTHS))[None] < lengths[:, None]
    wav = torch.randn(len(LENGTHS), max(LENGTHS), generator=generator) * attention_mask
    return wav, lengths, attention_mask.long()


def max_valid_diff(ours, theirs, padding_mask):
    return (ours - theirs)[~padding_mask].abs().max().item()


def assert_same_outputs(model, hf, batch):
    wav, lengths, attention_mask = batch
    with torch.no_grad():
        out = model.eval()(wav, lengths)
        expected = hf(wav, attention_mask=attention_mask, output_hidden_states=True)
    for ours, theirs in zip(out.hidden_states, expected.hidden_states, strict=True):
        assert max_valid_diff(ours, theirs, out.padding_mask) < 1e-4


def fairseq_state(hf_model):
    return {to_fairseq_key(key): value.clone() for key, value in hf_model.state_dict().items()}


def aqc_heads():
    generator = torch.Generator().manual_seed(5)
    shapes = {
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
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


# ------------------------------------------------------------------------------- Hugging Face
def test_hf_directory_loads_with_exact_outputs(hf_model, batch, tmp_path):
    hf_model.save_pretrained(tmp_path / "hf")
    checkpoint = load_checkpoint(tmp_path / "hf", pos_conv_mask_padding=False)
    assert checkpoint.source_format == "huggingface" and checkpoint.ctc_head is None
    assert checkpoint.config.conv_layers == CONV and checkpoint.config.conv_bias
    assert checkpoint.config.pos_conv_kernel == KERNEL and checkpoint.config.num_heads == HEADS
    assert_same_outputs(checkpoint.build_encoder(), hf_model, batch)


def test_hf_round_trip_is_exact_and_loads_in_transformers(hf_model, batch, tmp_path):
    hf_model.save_pretrained(tmp_path / "hf", max_shard_size="100KB")  # sharded on purpose
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    checkpoint = load_checkpoint(tmp_path / "hf", pos_conv_mask_padding=False)
    export_huggingface(checkpoint, tmp_path / "out")
    exported = load_file(str(tmp_path / "out" / "model.safetensors"))
    reference = hf_model.state_dict()
    assert set(exported) == set(reference)
    assert all(torch.equal(exported[key], reference[key]) for key in reference)
    reloaded, info = HFData2VecAudioModel.from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert_same_outputs(checkpoint.build_encoder(), reloaded.eval(), batch)
    # the padding flag has no weights; it travels in config.json
    assert (
        json.loads((tmp_path / "out" / "config.json").read_text())["pos_conv_mask_padding"] is False
    )
    assert load_checkpoint(tmp_path / "out").config.pos_conv_mask_padding is False


def test_hf_ctc_directory_and_export(hf_ctc_model, batch, tmp_path):
    wav, lengths, attention_mask = batch
    hf_ctc_model.save_pretrained(tmp_path / "ctc")
    model, head = load_encoder(tmp_path / "ctc", pos_conv_mask_padding=False)
    assert head.weight.shape == (10, HIDDEN)
    with torch.no_grad():
        out = model.eval()(wav, lengths)
        logits = head(out.last_hidden_state)
        expected = hf_ctc_model(wav, attention_mask=attention_mask).logits
    assert max_valid_diff(logits, expected, out.padding_mask) < 1e-4
    export_huggingface(model, tmp_path / "out", ctc_head=head)
    reloaded = Data2VecAudioForCTC.from_pretrained(tmp_path / "out").eval()
    exported = load_file(str(tmp_path / "out" / "model.safetensors"))
    reference = hf_ctc_model.state_dict()
    assert set(exported) == set(reference)
    assert all(torch.equal(exported[key], reference[key]) for key in reference)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(wav, attention_mask=attention_mask).logits, expected, rtol=0, atol=0
        )


def test_pytorch_model_bin_and_raw_state_dict(hf_model, batch, tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "config.json").write_text(hf_model.config.to_json_string())
    torch.save(hf_model.state_dict(), directory / "pytorch_model.bin")
    from_bin = load_checkpoint(directory, pos_conv_mask_padding=False)
    assert_same_outputs(from_bin.build_encoder(), hf_model, batch)
    raw = load_checkpoint(
        hf_model.state_dict(), config=hf_model.config.to_dict(), pos_conv_mask_padding=False
    )
    assert raw.source_format == "state_dict"
    assert_same_outputs(raw.build_encoder(), hf_model, batch)
    with pytest.raises(CheckpointError, match="raw state dict carries no architecture"):
        load_checkpoint(hf_model.state_dict())


def test_export_rejects_what_data2vec_audio_cannot_express(tmp_path):
    small = {"embed_dim": 32, "num_heads": 4, "pos_conv_groups": 4, "num_layers": 1}
    with pytest.raises(CheckpointError, match="pre-LN"):
        export_huggingface(
            Data2VecAudioModel(EncoderConfig(**small, layer_norm_first=True)), tmp_path
        )
    with pytest.raises(CheckpointError, match="extractor_mode='group_norm'"):
        export_huggingface(
            Data2VecAudioModel(EncoderConfig(**small, extractor_mode="group_norm")), tmp_path
        )


def test_unsupported_hf_config_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(CheckpointError, match="model_type='wav2vec2'"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------------------- fairseq
def test_fairseq_aqc_pretrained_checkpoint(hf_model, batch, tmp_path):
    state = fairseq_state(hf_model)
    heads = aqc_heads()
    state.update(heads)
    ema = {
        key[len("encoder.") :]: value + 1.0
        for key, value in state.items()
        if key.startswith("encoder.") and not key.startswith("encoder.pos_conv.")
    }
    state["_ema"] = ema
    path = tmp_path / "aqc.pt"
    torch.save(
        {
            "args": None,
            "cfg": {"model": FAIRSEQ_MODEL_CFG, "task": FAIRSEQ_TASK_CFG, "common": {"fp16": True}},
            "model": state,
            "optimizer_history": [{"num_updates": 400000}],
            "extra_state": {"epoch": 3},
        },
        path,
    )
    checkpoint = load_checkpoint(path, pos_conv_mask_padding=False)
    assert checkpoint.source_format == "fairseq" and checkpoint.normalize is True
    assert checkpoint.config.layerdrop == 0.05 and checkpoint.ctc_head is None
    assert_same_outputs(checkpoint.build_encoder(), hf_model, batch)
    assert sorted(checkpoint.heads) == ["contr_proj", "final_proj", "project_q", "quantizer"]
    for key, value in heads.items():
        name, local = key.split(".", 1)
        assert torch.equal(checkpoint.heads[name][local], value)
    # teacher: every EMA tensor under our name, pos_conv filled from the student
    teacher = checkpoint.teacher_state
    for key, value in hf_model.state_dict().items():
        if key.startswith("encoder.pos_conv_embed."):
            assert torch.equal(teacher[key[len("encoder.") :]], value)
        elif key.startswith("encoder."):
            assert torch.equal(teacher[key[len("encoder.") :]], value + 1.0)
    assert set(teacher) == {
        k[len("encoder.") :] for k in hf_model.state_dict() if k.startswith("encoder.")
    }


def test_fairseq_finetuned_checkpoint_with_ctc_head(hf_ctc_model, batch, tmp_path):
    wav, lengths, attention_mask = batch
    encoder = {
        k[len("data2vec_audio.") :]: v
        for k, v in hf_ctc_model.state_dict().items()
        if k.startswith("data2vec_audio.")
    }
    state = {"w2v_encoder.w2v_model." + to_fairseq_key(k): v for k, v in encoder.items()}
    state.update(
        {
            "w2v_encoder.w2v_model." + k: v
            for k, v in aqc_heads().items()
            if not k.startswith("final_proj")
        }
    )
    state["w2v_encoder.proj.weight"] = hf_ctc_model.lm_head.weight.detach().clone()
    state["w2v_encoder.proj.bias"] = hf_ctc_model.lm_head.bias.detach().clone()
    finetune_cfg = {
        "_name": "wav2vec_ctc",
        "w2v_path": "/nonexistent/pretrained.pt",
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.1,
        "dropout_input": 0.0,
        "layerdrop": 0.1,
        "w2v_args": {"model": FAIRSEQ_MODEL_CFG, "task": FAIRSEQ_TASK_CFG},
    }
    path = tmp_path / "ft.pt"
    torch.save({"cfg": {"model": finetune_cfg, "task": {"normalize": False}}, "model": state}, path)
    checkpoint = load_checkpoint(path, pos_conv_mask_padding=False)
    config = checkpoint.config
    assert (config.layerdrop, config.dropout, config.activation_dropout) == (0.1, 0.0, 0.1)
    assert checkpoint.normalize is False and "final_proj" not in checkpoint.heads
    model, head = checkpoint.build_encoder().eval(), checkpoint.build_ctc_head()
    with torch.no_grad():
        out = model(wav, lengths)
        expected = hf_ctc_model(wav, attention_mask=attention_mask).logits
        assert max_valid_diff(head(out.last_hidden_state), expected, out.padding_mask) < 1e-4


def test_fairseq_old_style_args_namespace(hf_model, batch, tmp_path):
    args = argparse.Namespace(**FAIRSEQ_MODEL_CFG, normalize=False)
    path = tmp_path / "old.pt"
    torch.save({"args": args, "model": fairseq_state(hf_model)}, path)
    checkpoint = load_checkpoint(path, pos_conv_mask_padding=False)
    assert checkpoint.normalize is False
    assert_same_outputs(checkpoint.build_encoder(), hf_model, batch)


def test_conv_feature_layers_parsed_without_eval():
    assert parse_conv_feature_layers(
        "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2"
    ) == list(DEFAULT_CONV_LAYERS)
    assert parse_conv_feature_layers("[(64, 3, 1)] * 2") == [(64, 3, 1), (64, 3, 1)]
    for hostile in ["__import__('os').system('true')", "[(1, 2, 3)] * 10 ** 9", "[x for x in y]"]:
        with pytest.raises(CheckpointError, match="conv_feature_layers"):
            parse_conv_feature_layers(hostile)
    with pytest.raises(CheckpointError, match="list of"):
        parse_conv_feature_layers("[(1, 2)]")


def test_fairseq_wav2vec2_positional_conv_rejected(tmp_path):
    path = tmp_path / "w2v.pt"
    torch.save({"cfg": {"model": {"pos_conv_depth": 1}}, "model": {}}, path)
    with pytest.raises(CheckpointError, match="pos_conv_depth=1"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------- native / CLI
def test_native_round_trip_keeps_everything(hf_ctc_model, tmp_path):
    hf_ctc_model.save_pretrained(tmp_path / "ctc")
    model, head = load_encoder(tmp_path / "ctc")
    teacher = Data2VecAudioModel(model.config).encoder
    heads = {"final_proj": torch.nn.Linear(HIDDEN, HIDDEN)}
    original = LoadedCheckpoint.from_model(model, head, teacher, heads, normalize=True)
    save_native(original, tmp_path / "native.pt")
    loaded = load_checkpoint(tmp_path / "native.pt")
    assert loaded.source_format == "d2v_speech" and loaded.config == model.config
    assert loaded.normalize is True
    for ours, theirs in [
        (loaded.encoder_state, model.state_dict()),
        (loaded.teacher_state, teacher.state_dict()),
        (loaded.heads["final_proj"], heads["final_proj"].state_dict()),
        (loaded.ctc_head, head.state_dict()),
    ]:
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_cli_inspect_and_convert(hf_model, batch, tmp_path, capsys):
    state = fairseq_state(hf_model)
    state.update(aqc_heads())
    source = tmp_path / "aqc.pt"
    torch.save(
        {"cfg": {"model": FAIRSEQ_MODEL_CFG, "task": FAIRSEQ_TASK_CFG}, "model": state}, source
    )
    assert main(["inspect", str(source)]) == 0
    printed = capsys.readouterr().out
    assert "format: fairseq" in printed and "quantizer" in printed and "normalize: True" in printed
    assert main(["convert", str(source), str(tmp_path / "hf")]) == 0
    reloaded = HFData2VecAudioModel.from_pretrained(tmp_path / "hf").eval()
    ours = load_checkpoint(tmp_path / "hf", pos_conv_mask_padding=False).build_encoder()
    assert_same_outputs(ours, reloaded, batch)
    assert_same_outputs(ours, hf_model, batch)
    assert main(["convert", str(source), str(tmp_path / "native.pt")]) == 0
    assert load_checkpoint(tmp_path / "native.pt").heads["project_q"]["weight"].shape == (8, 8)
    assert main(["inspect", str(tmp_path / "missing.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------- errors
def test_unknown_missing_and_misshaped_keys_are_all_named(hf_model):
    state = dict(hf_model.state_dict())
    state["encoder.bogus.weight"] = torch.zeros(1)
    state["encoder.layers.0.extra"] = torch.zeros(1)
    del state["encoder.layer_norm.bias"], state["feature_projection.projection.bias"]
    state["encoder.layers.1.feed_forward.output_dense.weight"] = torch.zeros(HIDDEN, FFN + 1)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(state, config=hf_model.config.to_dict())
    message = str(error.value)
    for key in [
        "encoder.bogus.weight",
        "encoder.layers.0.extra",
        "encoder.layer_norm.bias",
        "feature_projection.projection.bias",
        f"encoder.layers.1.feed_forward.output_dense.weight: checkpoint ({HIDDEN}, {FFN + 1})",
    ]:
        assert key in message
    assert "unknown keys (2)" in message and "missing keys (2)" in message


def test_unknown_fairseq_keys_are_all_named(hf_model, tmp_path):
    state = fairseq_state(hf_model)
    state["label_embs_concat"] = torch.zeros(3)
    state["encoder.layers.0.self_attn.rel_pos.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pt"
    torch.save({"cfg": {"model": FAIRSEQ_MODEL_CFG}, "model": state}, path)
    with pytest.raises(
        CheckpointError, match=r"unknown keys in the fairseq checkpoint \(2\)"
    ) as error:
        load_checkpoint(path)
    assert "label_embs_concat" in str(error.value)
    assert "encoder.layers.0.self_attn.rel_pos.weight" in str(error.value)


def test_pickled_objects_need_allow_pickle(hf_model, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(
        {
            "cfg": {"model": FAIRSEQ_MODEL_CFG},
            "model": fairseq_state(hf_model),
            "extra_state": {"saved": datetime.date(2024, 1, 1)},
        },
        path,
    )
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True).source_format == "fairseq"


# ------------------------------------------------------------------------------- our recipe
RECIPE_YAML = """\
seed: 3
output_folder: {out}
model_preset: {preset}
layerdrop: 0.2
model_config: !apply:d2v_speech.nn.presets.load_model_config
    name_or_path: !ref <model_preset>
    layerdrop: !ref <layerdrop>
model: !new:d2v_speech.nn.data2vec_audio.Data2VecAudioModel [!ref <model_config>]
train_audio_pipeline: !new:d2v_speech.data.pipelines.PretrainAudioPipeline
    augmenter: null
    normalize: True
    seed: !ref <seed>
"""


def tiny_config(**overrides):
    """The post-LN architecture of `hf_config()`, unmasked pos-conv padding as HF does."""
    sizes = {"embed_dim": HIDDEN, "num_layers": LAYERS, "num_heads": HEADS, "ffn_dim": FFN}
    pos_conv = {"pos_conv_depth": DEPTH, "pos_conv_kernel": KERNEL, "pos_conv_groups": GROUPS}
    values = {"conv_layers": CONV, "conv_bias": True, **sizes, **pos_conv}
    values.update({"pos_conv_mask_padding": False, "layerdrop": 0.0, **overrides})
    return EncoderConfig(**values)


def trained_objective(config, seed, aqc=True):
    """An objective whose student, teacher, heads and counters all differ from their init."""
    torch.manual_seed(seed)
    model = Data2VecAudioModel(config)
    if aqc:
        objective = AQCObjective(
            model, latent_vars=8, latent_groups=2, final_dim=8, average_top_k_layers=2
        )
        objective.quantizer.set_num_updates(1000)
    else:
        objective = Data2VecObjective(model, average_top_k_layers=2)
    perturbed(objective, seed)
    teacher = objective.teacher
    teacher.model.load_state_dict({k: v + 1.0 for k, v in model.encoder.state_dict().items()})
    teacher.num_updates = 37
    return objective


def save_recipe_checkpoint(save_folder, name, objective, unixtime):
    """As SpeechBrain's Checkpointer does: torch.save(state_dict) plus a CKPT.yaml meta file."""
    folder = save_folder / f"CKPT+{name}"
    folder.mkdir(parents=True)
    torch.save(objective.state_dict(), folder / "objective.ckpt")
    (folder / "CKPT.yaml").write_text(f"end-of-epoch: false\nunixtime: {unixtime}\n")
    return folder


def write_hyperparams(out, preset_config):
    """The preset file and SpeechBrain's hyperparams.yaml (references resolved as it does)."""
    preset = out.parent / "preset.yaml"
    preset.write_text(yaml.safe_dump(preset_config.to_dict()))
    recipe = RECIPE_YAML.format(out=out, preset=preset)
    (out / "hyperparams.yaml").write_text(resolve_references(recipe).getvalue())


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """results/<name>/<seed>: an older and a newer complete checkpoint, a newest incomplete one."""
    out = tmp_path_factory.mktemp("run") / "aqc_tiny" / "3"
    (out / "save").mkdir(parents=True)
    write_hyperparams(out, tiny_config())
    older = trained_objective(tiny_config(layerdrop=0.2), seed=1)
    newer = trained_objective(tiny_config(layerdrop=0.2), seed=2)
    save_recipe_checkpoint(out / "save", "2024-01-01+10-00-00+00", older, 100.0)
    save_recipe_checkpoint(out / "save", "2024-01-01+11-00-00+00", newer, 200.0)
    broken = out / "save" / "CKPT+2024-01-01+12-00-00+00"
    broken.mkdir()
    (broken / "objective.ckpt").write_bytes(b"half written")
    return out, older, newer


def assert_matches_objective(checkpoint, objective):
    state = objective.state_dict()
    encoder = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    assert set(checkpoint.encoder_state) == set(encoder)
    assert all(torch.equal(checkpoint.encoder_state[k], v) for k, v in encoder.items())
    teacher = objective.teacher.model.state_dict()
    assert set(checkpoint.teacher_state) == set(teacher)
    assert all(torch.equal(checkpoint.teacher_state[k], v) for k, v in teacher.items())
    for key, value in state.items():
        name, _, local = key.partition(".")
        if name in ("final_proj", "quantizer", "project_q", "contr_proj"):
            stored = checkpoint.heads[name][local]
            assert stored == value if local == "_extra_state" else torch.equal(stored, value)


def test_recipe_output_folder_gives_newest_complete_checkpoint(recipe_run):
    out, older, newer = recipe_run
    checkpoint = load_checkpoint(out)
    assert checkpoint.source_format == "d2v_speech_recipe" and checkpoint.normalize is True
    # the preset plus the hyperparams.yaml override of layerdrop
    assert checkpoint.config == tiny_config(layerdrop=0.2)
    assert checkpoint.num_updates == 37
    assert checkpoint.heads["quantizer"]["_extra_state"] == {
        "num_updates": 1000,
        "temperature": max(2.0 * 0.999995**1000, 0.5),
    }
    assert_matches_objective(checkpoint, newer)
    for source in [out / "save", out / "save" / "CKPT+2024-01-01+11-00-00+00"]:
        assert_matches_objective(load_checkpoint(source), newer)
    older_file = out / "save" / "CKPT+2024-01-01+10-00-00+00" / "objective.ckpt"
    assert_matches_objective(load_checkpoint(older_file), older)


def test_recipe_checkpoint_converts_to_hf_and_runs_like_transformers(recipe_run, batch, tmp_path):
    out, _, newer = recipe_run
    assert main(["convert", str(out), str(tmp_path / "hf")]) == 0
    reloaded = HFData2VecAudioModel.from_pretrained(tmp_path / "hf").eval()
    assert_same_outputs(newer.model, reloaded, batch)


def test_pre_ln_recipe_checkpoint_exports_natively(tmp_path, capsys):
    out = tmp_path / "d2v" / "1"
    (out / "save").mkdir(parents=True)
    config = tiny_config(layer_norm_first=True, layerdrop=0.2)
    write_hyperparams(out, config)
    objective = trained_objective(config, seed=4, aqc=False)
    save_recipe_checkpoint(out / "save", "2024-02-02+00-00-00+00", objective, 1.0)
    assert main(["convert", str(out), str(tmp_path / "hf")]) == 1
    error = capsys.readouterr().err
    assert "pre-LN" in error and "--to native" in error
    assert main(["convert", str(out), str(tmp_path / "d2v.pt")]) == 0
    native = load_checkpoint(tmp_path / "d2v.pt")
    assert native.num_updates == 37 and native.config == config
    assert_matches_objective(native, objective)
    assert main(["inspect", str(out)]) == 0
    assert "num_updates: 37" in capsys.readouterr().out


def test_recipe_checkpoint_errors_are_clear(recipe_run, tmp_path):
    out, _, newer = recipe_run
    with pytest.raises(CheckpointError, match="save was interrupted"):
        load_checkpoint(out / "save" / "CKPT+2024-01-01+12-00-00+00")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no CKPT\+\* folder with CKPT.yaml"):
        load_checkpoint(tmp_path / "empty")
    lone = save_recipe_checkpoint(tmp_path / "lone", "x", newer, 1.0)
    with pytest.raises(CheckpointError, match="no hyperparams.yaml"):
        load_checkpoint(lone)
    assert_matches_objective(load_checkpoint(lone, config=newer.model.config), newer)
    state = newer.state_dict()
    state["decoder.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="decoder.weight"):
        load_checkpoint(state, config=newer.model.config)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "hyperparams.yaml").write_text("model_config: !apply:my.module.build [3]\n")
    save_recipe_checkpoint(odd, "y", newer, 1.0)
    with pytest.raises(CheckpointError, match="!apply:my.module.build"):
        load_checkpoint(odd)
