"""Export to fairseq data2vec / data2vec-aqc `.pt`: exact round trips through our reader, the key
layout of tests/fairseq_layout.py, what cannot be exported, and fairseq's own
`Data2VecAudioModel` loading the export (and our reader loading fairseq's own state dict)."""

import logging

import pytest
import torch
from export_helpers import (
    fairseq_layout,
    perturbed,
    small_config,
    speech_waveform,
    trained_checkpoint,
)

from d2v_speech.checkpoints import LoadedCheckpoint, load_checkpoint, main, save_native
from d2v_speech.checkpoints.fairseq_export import (
    FormatError,
    export_fairseq,
    fairseq_checkpoint,
)
from d2v_speech.nn import Data2VecAudioModel
from d2v_speech.nn.conv_decoder import ConvDecoder1d

AQC_HEADS = ["contr_proj", "final_proj", "project_q", "quantizer"]
# pre-LN, GroupNorm extractor, conv bias, even positional kernel (fairseq's SamePad trims)
PRE_LN = {"layer_norm_first": True, "extractor_mode": "group_norm", "conv_bias": True}
CONFIGS = {"post_ln": {}, "pre_ln_group_norm": {**PRE_LN, "pos_conv_kernel": 4}}


def assert_same_tensors(ours, theirs):
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def teacher_key(key):
    """Our teacher key -> fairseq `_ema` key (relative to `encoder.`), by the independent table."""
    return fairseq_layout.to_fairseq_key("encoder." + key)[len("encoder.") :]


def without_extra_state(head):
    return {key: value for key, value in head.items() if key != "_extra_state"}


@pytest.mark.parametrize("aqc", [True, False], ids=["aqc", "data2vec"])
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_pretraining_round_trip_is_exact(overrides, aqc, tmp_path):
    original = trained_checkpoint(small_config(**overrides), aqc=aqc)
    loaded = load_checkpoint(export_fairseq(original, tmp_path / "run.pt"))
    assert loaded.source_format == "fairseq" and loaded.config == original.config
    assert_same_tensors(loaded.encoder_state, original.encoder_state)
    assert_same_tensors(loaded.teacher_state, original.teacher_state)
    assert sorted(loaded.heads) == sorted(original.heads)
    assert sorted(original.heads) == (AQC_HEADS if aqc else ["final_proj"])
    for name, head in original.heads.items():
        assert_same_tensors(loaded.heads[name], without_extra_state(head))
    assert (loaded.normalize, loaded.num_updates, loaded.ctc_head) == (True, 37, None)


def test_keys_and_cfg_follow_the_fairseq_layout():
    original = trained_checkpoint(small_config(), aqc=True)
    content = fairseq_checkpoint(original)
    state = content["model"]
    heads = {f"{n}.{k}" for n, h in original.heads.items() for k in without_extra_state(h)}
    encoder = {fairseq_layout.to_fairseq_key(key) for key in original.encoder_state}
    assert set(state) == encoder | heads | {"_ema"}
    # fairseq's EMAModule keys are relative to the Transformer encoder
    teacher = {teacher_key(key) for key in original.teacher_state}
    assert set(state["_ema"]) == teacher
    model_cfg, task_cfg = content["cfg"]["model"], content["cfg"]["task"]
    assert model_cfg["_name"] == "data2vec_audio" and task_cfg["normalize"] is True
    assert (model_cfg["conv_pos"], model_cfg["pos_conv_depth"]) == (10, 2)
    # data2vec-aqc fork fields, read off the heads: 2 groups of 8 codes, vq_dim 8
    aqc = {"latent_vars": 8, "latent_groups": 2, "latent_dim": 8, "final_proj_dim": 8}
    assert {key: model_cfg[key] for key in aqc} == aqc
    assert content["optimizer_history"][-1]["num_updates"] == 37


def test_ctc_model_round_trip_uses_the_finetuned_layout(tmp_path):
    pretrained = trained_checkpoint(small_config(layerdrop=0.1), aqc=True)
    head = perturbed(torch.nn.Linear(32, 12), seed=5)
    original = LoadedCheckpoint(
        **{**pretrained.__dict__, "ctc_head": {k: v.detach() for k, v in head.state_dict().items()}}
    )
    content = fairseq_checkpoint(original)
    assert content["cfg"]["model"]["_name"] == "wav2vec_ctc"
    assert "w2v_encoder.proj.weight" in content["model"]
    assert "w2v_encoder.w2v_model.post_extract_proj.weight" in content["model"]
    path = tmp_path / "ctc.pt"
    torch.save(content, path)
    loaded = load_checkpoint(path)
    assert loaded.config == original.config and loaded.normalize is True
    assert_same_tensors(loaded.encoder_state, original.encoder_state)
    assert_same_tensors(loaded.ctc_head, original.ctc_head)
    # as fairseq's fine-tuning does: no EMA teacher and no final_proj, the aqc heads stay
    assert loaded.teacher_state is None and sorted(loaded.heads) == sorted(
        set(AQC_HEADS) - {"final_proj"}
    )
    for name in loaded.heads:
        assert_same_tensors(loaded.heads[name], without_extra_state(original.heads[name]))


def checkpoint_of(config):
    torch.manual_seed(0)
    return LoadedCheckpoint.from_model(Data2VecAudioModel(config))


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"alibi": True}, "ALiBi"),
        ({"pos_conv_depth": 1}, "pos_conv_depth=1"),
        ({"layer_norm_eps": 1e-6}, "layer_norm_eps=1e-06"),
    ],
)
def test_what_data2vec_cannot_hold_is_refused_in_one_line(overrides, problem):
    with pytest.raises(FormatError) as error:
        fairseq_checkpoint(checkpoint_of(small_config(**overrides)), source="run/model.pt")
    message = str(error.value)
    assert (
        message.startswith("run/model.pt: cannot be exported to fairseq: ") and problem in message
    )
    assert "\n" not in message


def test_data2vec2_decoder_head_is_refused():
    checkpoint = trained_checkpoint(small_config(), aqc=False)
    decoder = ConvDecoder1d(32, decoder_dim=16, kernel=3, num_layers=1, groups=1)
    checkpoint.heads["decoder"] = decoder.state_dict()
    with pytest.raises(FormatError, match=r"head\(s\) \['decoder'\]"):
        fairseq_checkpoint(checkpoint, source="x.pt")


def run_cli(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_converts_to_fairseq_and_reads_it_back(tmp_path, capsys):
    native = save_native(trained_checkpoint(small_config(), aqc=True), tmp_path / "run.ckpt")
    dst = tmp_path / "fairseq.pt"
    status, out, _ = run_cli(["convert", str(native), str(dst), "--to", "fairseq"], capsys)
    card = tmp_path / "fairseq.md"
    assert status == 0 and out == f"wrote {dst} (fairseq)\nwrote {card} (its model card)\n"
    status, out, _ = run_cli(["inspect", str(dst)], capsys)
    assert status == 0 and "format: fairseq" in out and "teacher: yes" in out


@pytest.mark.parametrize("target", ["fairseq", "s3prl"])
def test_cli_alibi_export_stops_with_one_line(target, tmp_path, capsys):
    src = save_native(checkpoint_of(small_config(alibi=True)), tmp_path / "d2v2.pt")
    argv = ["convert", str(src), str(tmp_path / "out.pt"), "--to", target]
    status, out, err = run_cli(argv, capsys)
    assert status == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: {src}: cannot be exported to {target}: ") and "ALiBi" in err


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"model: base\nlayers: 12\n", "a text file, not a PyTorch checkpoint"),
        (None, "checkpoint content is a list, not a dict"),
    ],
    ids=["text", "list"],
)
def test_cli_wrong_format_source_stops_with_one_line(content, problem, tmp_path, capsys):
    src = tmp_path / "not_a_checkpoint.pt"
    if content is None:
        torch.save([1, 2, 3], src)
    else:
        src.write_bytes(content)
    argv = ["convert", str(src), str(tmp_path / "out.pt"), "--to", "fairseq"]
    status, out, err = run_cli(argv, capsys)
    assert status == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: {src}: ") and problem in err


# ----------------------------------------------------------------- fairseq's own code (optional)
def fairseq_modules():
    """(checkpoint_utils, the data2vec_audio module) of an installed fairseq, else skip."""
    try:
        from fairseq import checkpoint_utils

        try:
            from fairseq.examples.data2vec.models import data2vec_audio
        except ImportError:  # a source checkout keeps examples/ beside fairseq/
            from examples.data2vec.models import data2vec_audio
    except ImportError as error:
        pytest.skip(
            f"fairseq is not installed ({error}); `pip install --no-build-isolation "
            "fairseq-fixed==0.12.3.1` (needs Cython) runs these tests"
        )
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    return checkpoint_utils, data2vec_audio


def padded_batch():
    """Two utterances of 9600 and 6400 samples, zero padded; fairseq's mask is True at pads."""
    wav = torch.stack([speech_waveform(9600), torch.roll(speech_waveform(9600), 2000)])
    lengths = torch.tensor([9600, 6400])
    padding = torch.arange(9600)[None] >= lengths[:, None]
    return wav.masked_fill(padding, 0.0), lengths, padding


def assert_same_layers(ours, fairseq_out, pre_ln):
    """Every layer's output and FFN output (the data2vec targets), and the final output, 1e-4."""
    valid = ~ours.padding_mask
    for index, (x, _, ffn) in enumerate(fairseq_out["layer_results"]):
        pairs = [(ours.ffn_outputs[index], ffn)]
        if not (pre_ln and index == len(ours.ffn_outputs) - 1):  # ours: after the final LN
            pairs.append((ours.hidden_states[index + 1], x))
        for mine, theirs in pairs:
            assert (mine - theirs.transpose(0, 1))[valid].abs().max() < 1e-4, index
    assert (ours.last_hidden_state - fairseq_out["x"])[valid].abs().max() < 1e-4


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_fairseq_loads_the_export_with_the_same_outputs(overrides, tmp_path):
    checkpoint_utils, _ = fairseq_modules()
    # the reference is the original encoder, zeroing padding once as fairseq does
    config = small_config(pos_conv_mask_padding=False, **overrides)
    original = trained_checkpoint(config, aqc=False)
    path = export_fairseq(original, tmp_path / "data2vec.pt")
    models, cfg, _ = checkpoint_utils.load_model_ensemble_and_task(
        [str(path)], arg_overrides={"data": str(tmp_path)}
    )
    model = models[0].eval()
    assert type(model).__name__ == "Data2VecAudioModel" and cfg.task.normalize is True
    # fairseq restored our teacher into its EMAModule (strict load, `_ema` consumed)
    ema = model.ema.fp32_params
    expected = {teacher_key(k): v for k, v in original.teacher_state.items()}
    assert_same_tensors(dict(ema), expected)
    wav, lengths, padding = padded_batch()
    ours = original.build_encoder().eval()
    with torch.no_grad():
        theirs = model.extract_features(wav, padding, mask=False)
        assert_same_layers(ours(wav, lengths), theirs, overrides.get("layer_norm_first", False))


def test_state_saved_by_fairseq_loads_into_ours(tmp_path):
    checkpoint_utils, data2vec_audio = fairseq_modules()
    from omegaconf import OmegaConf

    exported = fairseq_checkpoint(trained_checkpoint(small_config(), aqc=False))
    model_cfg = OmegaConf.merge(
        OmegaConf.structured(data2vec_audio.Data2VecAudioConfig), exported["cfg"]["model"]
    )
    torch.manual_seed(1)
    model = data2vec_audio.Data2VecAudioModel(model_cfg)
    model.set_num_updates(5)  # fairseq builds its EMA teacher here
    perturbed(model, seed=2)
    for value in model.ema.fp32_params.values():
        value.add_(0.5)
    state = {
        "args": None,
        "cfg": {
            "model": OmegaConf.to_container(model_cfg, enum_to_str=True),
            "task": {"normalize": True},
        },
        "model": model.state_dict(),
        "optimizer_history": [{"num_updates": 5}],
    }
    path = tmp_path / "fairseq_saved.pt"
    checkpoint_utils.torch_persistent_save(state, str(path))
    loaded = load_checkpoint(path, pos_conv_mask_padding=False)
    assert loaded.num_updates == 5 and sorted(loaded.heads) == ["final_proj"]
    ours_by_fairseq_key = {teacher_key(k): v for k, v in loaded.teacher_state.items()}
    assert_same_tensors(ours_by_fairseq_key, dict(model.ema.fp32_params))
    wav, lengths, padding = padded_batch()
    with torch.no_grad():
        theirs = model.eval().extract_features(wav, padding, mask=False)
        assert_same_layers(loaded.build_encoder().eval()(wav, lengths), theirs, False)
