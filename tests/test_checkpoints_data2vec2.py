"""fairseq data2vec 2.0 (`Data2VecMultiModel`, audio) checkpoints: pretrained and fine-tuned.

The fairseq files are built from `fairseq_layout`'s own v2 key table (read off fairseq's code,
independently of the converter), with random values, a realistic cfg and the trainer's extras.
"""

import copy

import pytest
import torch
from fairseq_layout import D2V2_AUDIO, decoder_to_data2vec2, to_data2vec2_state
from transformers import Data2VecAudioModel as HFData2VecAudioModel

from d2v_speech.checkpoints import (
    CheckpointError,
    export_huggingface,
    load_checkpoint,
    main,
)
from d2v_speech.checkpoints.fairseq_data2vec2 import without_alibi
from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.nn.conv_decoder import ConvDecoder1d

EMBED, HEADS, DEPTH, CONV = 32, 4, 2, [(16, 8, 4), (16, 4, 2)]
DECODER = {"decoder_dim": 16, "kernel": 7, "num_layers": 4, "groups": 16, "residual": True}
UPDATES = 400_000


# `cfg.model.modalities.audio` as fairseq's trainer saves it (enum values as strings), tiny sizes
AUDIO_CFG = {
    "type": "AUDIO",
    "prenet_depth": 0,
    "prenet_layerdrop": 0.05,
    "prenet_dropout": 0.1,
    "num_extra_tokens": 0,
    "mask_noise_std": 0.01,
    "mask_prob": 0.5,
    "mask_prob_adjust": 0.05,
    "mask_length": 5,
    "inverse_mask": False,
    "encoder_zero_mask": True,
    "ema_local_encoder": False,
    "local_grad_mult": 1.0,
    "use_alibi_encoder": True,
    "alibi_scale": 1.0,
    "learned_alibi": False,
    "learned_alibi_scale": True,
    "learned_alibi_scale_per_head": True,
    "learned_alibi_scale_per_layer": False,
    "num_alibi_heads": HEADS,
    "model_depth": DEPTH,
    "decoder": {
        "decoder_dim": 16,
        "decoder_groups": 16,
        "decoder_kernel": 7,
        "decoder_layers": 4,
        "input_dropout": 0.1,
        "add_positions_masked": False,
        "add_positions_all": False,
        "decoder_residual": True,
        "projection_layers": 1,
        "projection_ratio": 2.0,
    },
    "extractor_mode": "layer_norm",
    "feature_encoder_spec": "[(16, 8, 4)] + [(16, 4, 2)]",
    "conv_pos_width": 95,
    "conv_pos_groups": 16,
    "conv_pos_depth": 5,
    "conv_pos_pre_ln": False,
}


def model_cfg(prenet_depth=0, ema_encoder_only=False, **overrides):
    """`cfg.model` of a data2vec 2.0 audio pretraining run, tiny sizes."""
    audio = {**copy.deepcopy(AUDIO_CFG), "prenet_depth": prenet_depth}
    cfg = {
        "_name": "data2vec_multi",
        "loss_beta": 0.0,
        "loss_scale": None,
        "depth": DEPTH,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_heads": HEADS,
        "norm_eps": 1e-5,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.05,
        "embed_dim": EMBED,
        "mlp_ratio": 4.0,
        "layer_norm_first": False,
        "average_top_k_layers": 2,
        "end_of_block_targets": False,
        "clone_batch": 8,
        "instance_norm_target_layer": True,
        "ema_decay": 0.999,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 75000,
        "ema_encoder_only": ema_encoder_only,
        "max_update": UPDATES,
        "modalities": {"audio": audio, "image": {"type": "IMAGE", "prenet_depth": 4}},
        "shared_decoder": None,
        "supported_modality": "AUDIO",
        "skip_ema": False,
        "cls_loss": 0.0,
        "recon_loss": 0.0,
        "d2v_loss": 1.0,
    }
    cfg.update(overrides)
    return cfg


TASK_CFG = {"_name": "audio_pretraining", "data": "/nonexistent", "normalize": True}


def expected_config(prenet_depth=0, **overrides):
    values = {
        "conv_layers": CONV,
        "conv_bias": False,
        "embed_dim": EMBED,
        "num_layers": DEPTH + prenet_depth,
        "num_heads": HEADS,
        "ffn_dim": 4 * EMBED,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "feature_dropout": 0.0,
        "layerdrop": 0.05,
        "pos_conv_depth": 5,
        "pos_conv_kernel": 19,  # max(3, 95 // 5)
        "pos_conv_groups": 16,
        "layer_norm_eps": 1e-5,
        "alibi": True,
        **overrides,
    }
    return EncoderConfig(**values)


def randomized(module, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    return module.eval()


class Source:
    """Our student, decoder and teacher, and the fairseq v2 file made from them."""

    def __init__(self, prenet_depth=0, ema_encoder_only=False, seed=0):
        self.prenet_depth = prenet_depth
        self.student = randomized(Data2VecAudioModel(expected_config(prenet_depth)), seed)
        self.decoder = randomized(ConvDecoder1d(EMBED, **DECODER), seed + 1)
        self.student_state = {k: v.clone() for k, v in self.student.state_dict().items()}
        self.teacher = {
            k[len("encoder.") :]: v + 1.0
            for k, v in self.student_state.items()
            if k.startswith("encoder.")
        }
        ema_source = {"encoder." + k: v for k, v in self.teacher.items()}
        if ema_encoder_only:  # only the main blocks, keys relative to `blocks`
            ema = {
                k[len("blocks.") :]: v
                for k, v in to_data2vec2_state(ema_source, prenet_depth).items()
                if k.startswith("blocks.")
            }
        else:
            ema = to_data2vec2_state(ema_source, prenet_depth)
        self.model = {
            **to_data2vec2_state(self.student_state, prenet_depth),
            **decoder_to_data2vec2(self.decoder.state_dict()),
            "_ema": ema,
        }
        self.cfg = model_cfg(prenet_depth, ema_encoder_only)

    def save(self, path):
        torch.save(
            {
                "args": None,
                "cfg": {"common": {"fp16": True, "seed": 1}, "model": self.cfg, "task": TASK_CFG},
                "model": self.model,
                "criterion": None,
                "optimizer_history": [{"criterion_name": "ModelCriterion", "num_updates": UPDATES}],
                "extra_state": {"epoch": 40, "train_iterator": {"epoch": 40}},
                "last_optimizer_state": {"state": {}, "param_groups": []},
            },
            path,
        )
        return path


@pytest.fixture(scope="module")
def source():
    return Source()


@pytest.fixture(scope="module")
def pretrained(source, tmp_path_factory):
    return source.save(tmp_path_factory.mktemp("d2v2") / "base_libri.pt")


def assert_same(state, reference):
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def test_fairseq_layout_matches_fairseq_names(source):
    """Spot checks of the independent table against names in fairseq's code."""
    model = source.model
    for key in [
        D2V2_AUDIO + "local_encoder.conv_layers.1.0.weight",
        D2V2_AUDIO + "local_encoder.conv_layers.1.2.1.bias",
        D2V2_AUDIO + "project_features.1.weight",
        D2V2_AUDIO + "project_features.2.bias",
        D2V2_AUDIO + "relative_positional_encoder.5.0.weight",
        D2V2_AUDIO + "context_encoder.norm.weight",
        D2V2_AUDIO + "decoder.blocks.3.0.weight",
        D2V2_AUDIO + "decoder.proj.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.1.attn.proj.bias",
        "blocks.1.norm1.weight",
        "blocks.1.norm2.bias",
        "blocks.1.mlp.fc1.weight",
        "blocks.1.mlp.fc2.bias",
    ]:
        assert key in model, key
    assert model[D2V2_AUDIO + "alibi_scale"].shape == (1, 1, HEADS, 1, 1)
    assert model["blocks.0.attn.qkv.weight"].shape == (3 * EMBED, EMBED)
    assert D2V2_AUDIO + "relative_positional_encoder.0.0.weight" not in model


def test_pretrained_checkpoint_lands_completely(source, pretrained):
    checkpoint = load_checkpoint(pretrained)
    assert checkpoint.source_format == "fairseq_data2vec2"
    assert checkpoint.config == expected_config()
    assert checkpoint.normalize is True and checkpoint.num_updates == UPDATES
    assert checkpoint.ctc_head is None
    # every key of ours filled (masked_spec_embed: v2 has none) with the same values
    expected = {k: v for k, v in source.student_state.items() if k != "masked_spec_embed"}
    assert_same(checkpoint.encoder_state, expected)
    assert checkpoint.encoder_state["encoder.alibi_scale"].shape == (HEADS,)
    qkv = source.model["blocks.1.attn.qkv.weight"]
    for index, name in enumerate("qkv"):
        part = checkpoint.encoder_state[f"encoder.layers.1.attention.{name}_proj.weight"]
        assert torch.equal(part, qkv[index * EMBED : (index + 1) * EMBED])
    assert_same(checkpoint.teacher_state, source.teacher)
    assert sorted(checkpoint.heads) == ["decoder"]
    assert_same(checkpoint.heads["decoder"], source.decoder.state_dict())
    assert checkpoint.decoder_config == DECODER
    assert_same(checkpoint.build_decoder().state_dict(), source.decoder.state_dict())
    encoder = checkpoint.build_encoder().eval()
    wav = torch.randn(2, 1200)
    with torch.no_grad():
        ours, reference = encoder(wav).last_hidden_state, source.student(wav).last_hidden_state
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_prenet_blocks_and_ema_of_blocks_only(tmp_path):
    """Large's layout (prenet blocks in the context encoder) and `ema_encoder_only: true`."""
    source = Source(prenet_depth=1, ema_encoder_only=True, seed=3)
    assert D2V2_AUDIO + "context_encoder.blocks.0.attn.qkv.weight" in source.model
    assert "blocks.1.mlp.fc2.weight" in source.model and "blocks.2.norm1.weight" not in source.model
    checkpoint = load_checkpoint(source.save(tmp_path / "large.pt"))
    assert checkpoint.config == expected_config(prenet_depth=1)
    assert_same(
        checkpoint.encoder_state,
        {k: v for k, v in source.student_state.items() if k != "masked_spec_embed"},
    )
    # main blocks from the EMA; the rest (pos conv, LN, ALiBi scale, prenet) is the student's
    for key, value in checkpoint.teacher_state.items():
        from_ema = key.startswith(("layers.1.", "layers.2."))
        reference = source.teacher[key] if from_ema else source.student_state["encoder." + key]
        assert torch.equal(value, reference), key
    assert set(checkpoint.teacher_state) == set(source.teacher)


def test_finetuned_checkpoint(source, tmp_path):
    prefix = "w2v_encoder.w2v_model."
    state = {
        prefix + k: v
        for k, v in source.model.items()
        if k != "_ema" and not k.startswith(D2V2_AUDIO + "decoder.")
    }
    # fairseq drops these itself: an old mask embedding, another modality's encoder
    state[prefix + D2V2_AUDIO + "encoder_mask"] = torch.zeros(EMBED)
    state[prefix + "modality_encoders.IMAGE.local_encoder.proj.weight"] = torch.zeros(3, 3)
    generator = torch.Generator().manual_seed(9)
    state["w2v_encoder.proj.weight"] = torch.randn(10, EMBED, generator=generator)
    state["w2v_encoder.proj.bias"] = torch.randn(10, generator=generator)
    finetune_cfg = {
        "_name": "wav2vec_ctc",
        "w2v_path": "/nonexistent/base_libri.pt",
        "normalize": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.1,
        "dropout_input": 0.0,
        "layerdrop": 0.1,
        "w2v_args": {"model": source.cfg, "task": TASK_CFG},
    }
    path = tmp_path / "base_libri_960h.pt"
    cfg = {"model": finetune_cfg, "task": {"_name": "audio_finetuning", "normalize": True}}
    torch.save({"cfg": cfg, "model": state, "optimizer_history": [{"num_updates": 320}]}, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == expected_config(
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.1, layerdrop=0.1
    )
    assert checkpoint.num_updates is None and checkpoint.teacher_state is None
    assert checkpoint.heads == {} and checkpoint.decoder_config == DECODER
    assert_same(
        checkpoint.encoder_state,
        {k: v for k, v in source.student_state.items() if k != "masked_spec_embed"},
    )
    head = checkpoint.build_ctc_head()
    assert torch.equal(head.weight, state["w2v_encoder.proj.weight"])
    assert torch.equal(head.bias, state["w2v_encoder.proj.bias"])


def test_raw_state_dict_with_config(source):
    checkpoint = load_checkpoint(dict(source.model), config=expected_config())
    assert checkpoint.source_format == "fairseq_data2vec2"
    assert checkpoint.decoder_config == DECODER  # read off the weights
    assert_same(checkpoint.teacher_state, source.teacher)


def test_unknown_keys_and_unsupported_options_are_refused(source, tmp_path):
    model = dict(source.model)
    model["recon_proj.weight"] = torch.zeros(2, 2)
    model["blocks.0.attn.logit_scale"] = torch.zeros(HEADS, 1, 1)
    path = tmp_path / "odd.pt"
    torch.save({"cfg": {"model": source.cfg, "task": TASK_CFG}, "model": model}, path)
    with pytest.raises(CheckpointError, match=r"unknown keys .* \(2\)") as error:
        load_checkpoint(path)
    assert "recon_proj.weight" in str(error.value)
    assert "blocks.0.attn.logit_scale" in str(error.value)
    for overrides, message in [
        ({"layer_norm_first": True}, "pre-LN"),
        ({"norm_affine": False}, "norm_affine"),
    ]:
        cfg = {**source.cfg, **overrides}
        torch.save({"cfg": {"model": cfg}, "model": source.model}, path)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
    cfg = copy.deepcopy(source.cfg)
    cfg["modalities"]["audio"]["learned_alibi_scale_per_layer"] = True
    torch.save({"cfg": {"model": cfg}, "model": source.model}, path)
    with pytest.raises(CheckpointError, match="learned_alibi_scale_per_layer"):
        load_checkpoint(path)
    model = dict(source.model)
    model[D2V2_AUDIO + "alibi_scale"] = torch.ones(DEPTH, 1, HEADS, 1, 1)
    torch.save({"cfg": {"model": source.cfg}, "model": model}, path)
    with pytest.raises(CheckpointError, match="alibi_scale of shape"):
        load_checkpoint(path)


def test_inspect_and_native_round_trip(source, pretrained, tmp_path, capsys):
    assert main(["inspect", str(pretrained)]) == 0
    printed = capsys.readouterr().out
    for text in [
        "format: fairseq_data2vec2 = fairseq data2vec 2.0 (data2vec_multi)",
        "alibi: on",
        "teacher: yes",
        "decoder: present (decoder_dim 16, kernel 7, num_layers 4, groups 16, residual True)",
        f"num_updates: {UPDATES}",
        "normalize: True",
    ]:
        assert text in printed, text
    native = tmp_path / "native.pt"
    assert main(["convert", str(pretrained), str(native)]) == 0
    loaded, original = load_checkpoint(native), load_checkpoint(pretrained)
    assert loaded.config == original.config and loaded.decoder_config == DECODER
    assert loaded.num_updates == UPDATES
    assert_same(loaded.encoder_state, original.encoder_state)
    assert_same(loaded.teacher_state, original.teacher_state)
    assert_same(loaded.heads["decoder"], original.heads["decoder"])


def test_hf_export_refuses_alibi_and_works_without(source, pretrained, tmp_path, capsys):
    checkpoint = load_checkpoint(pretrained)
    with pytest.raises(CheckpointError, match="no ALiBi attention bias"):
        export_huggingface(checkpoint, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert main(["convert", str(pretrained), str(tmp_path / "hf"), "--to", "hf"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "ALiBi" in error and "--to native" in error
    assert not (tmp_path / "hf").exists()

    plain = without_alibi(checkpoint)
    assert not plain.config.alibi and "encoder.alibi_scale" not in plain.encoder_state
    assert "alibi_scale" not in plain.teacher_state and checkpoint.config.alibi
    export_huggingface(plain, tmp_path / "hf")
    reloaded = HFData2VecAudioModel.from_pretrained(tmp_path / "hf").eval()
    ours = plain.build_encoder().eval()
    wav = torch.randn(1, 1200)
    with torch.no_grad():
        expected = reloaded(wav).last_hidden_state
        torch.testing.assert_close(ours(wav).last_hidden_state, expected, rtol=0, atol=1e-5)
