"""Hugging Face `Data2VecAudioModel` / `Data2VecAudioForCTC` directories: config translation,
reading (safetensors or bin, sharded or not) and export."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from d2v_speech.checkpoints.loaded import (
    FORMAT_HF,
    HF_PREFIX,
    CheckpointError,
    LoadedCheckpoint,
    _detached,
    _validated,
)
from d2v_speech.checkpoints.torch_files import _torch_load
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel

_HF_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "hidden_dropout": 0.1,
    "activation_dropout": 0.1,
    "attention_dropout": 0.1,
    "feat_proj_dropout": 0.0,
    "layerdrop": 0.1,
    "layer_norm_eps": 1e-5,
    "conv_dim": [512] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": False,
    "num_conv_pos_embeddings": 5,
    "conv_pos_kernel_size": 19,
    "num_conv_pos_embedding_groups": 16,
    "add_adapter": False,
}

_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def hf_config_to_encoder_config(
    hf_config: Mapping[str, Any], pos_conv_mask_padding: bool | None = None
) -> EncoderConfig:
    """Map a Hugging Face `Data2VecAudioConfig` dict (config.json) to an `EncoderConfig`.

    `pos_conv_mask_padding` None keeps the value stored by `export_huggingface` (or our default).
    `do_stable_layer_norm` / `feat_extract_norm` are ignored, as `Data2VecAudioModel` does.
    """
    values = {**_HF_DEFAULTS, **hf_config}
    model_type = values.get("model_type", "data2vec-audio")
    if model_type != "data2vec-audio":
        raise CheckpointError(
            f"config.json has model_type={model_type!r}; only 'data2vec-audio' is supported "
            "(wav2vec2 uses a different positional convolution)"
        )
    for name in ("hidden_act", "feat_extract_activation"):
        if values[name] != "gelu":
            raise CheckpointError(f"config.json {name}={values[name]!r}; only 'gelu' is supported")
    if values["add_adapter"]:
        raise CheckpointError("config.json add_adapter=True; adapters are not supported")
    conv = (values["conv_dim"], values["conv_kernel"], values["conv_stride"])
    if len({len(part) for part in conv}) != 1:
        raise CheckpointError(
            f"config.json conv_dim/conv_kernel/conv_stride lengths differ: {[len(p) for p in conv]}"
        )
    if pos_conv_mask_padding is None:
        pos_conv_mask_padding = bool(
            values.get("pos_conv_mask_padding", EncoderConfig.pos_conv_mask_padding)
        )
    return EncoderConfig(
        conv_layers=[(int(c), int(k), int(s)) for c, k, s in zip(*conv)],
        conv_bias=bool(values["conv_bias"]),
        extractor_mode="layer_norm",
        embed_dim=int(values["hidden_size"]),
        num_layers=int(values["num_hidden_layers"]),
        num_heads=int(values["num_attention_heads"]),
        ffn_dim=int(values["intermediate_size"]),
        dropout=float(values["hidden_dropout"]),
        attention_dropout=float(values["attention_dropout"]),
        activation_dropout=float(values["activation_dropout"]),
        feature_dropout=float(values["feat_proj_dropout"]),
        layerdrop=float(values["layerdrop"]),
        pos_conv_depth=int(values["num_conv_pos_embeddings"]),
        pos_conv_kernel=int(values["conv_pos_kernel_size"]),
        pos_conv_groups=int(values["num_conv_pos_embedding_groups"]),
        pos_conv_mask_padding=pos_conv_mask_padding,
        layer_norm_first=False,
        layer_norm_eps=float(values["layer_norm_eps"]),
    )


def encoder_config_to_hf(config: EncoderConfig, vocab_size: int | None = None) -> dict[str, Any]:
    """`Data2VecAudioConfig` fields for `config`; raises for what Data2VecAudio cannot express."""
    if config.alibi:
        raise CheckpointError(
            "ALiBi encoders (alibi=True, data2vec 2.0) cannot be exported as Hugging Face "
            "Data2VecAudio, which has no ALiBi attention bias; fine-tune this checkpoint here or "
            "export it natively"
        )
    if config.layer_norm_first:
        raise CheckpointError(
            "pre-LN models (layer_norm_first=True) cannot be exported as Hugging Face "
            "Data2VecAudio, which is post-LN only"
        )
    if config.extractor_mode != "layer_norm":
        raise CheckpointError(
            f"extractor_mode={config.extractor_mode!r} cannot be exported as Hugging Face "
            "Data2VecAudio, which always uses a LayerNorm in every conv block"
        )
    return {
        "architectures": ["Data2VecAudioForCTC" if vocab_size else "Data2VecAudioModel"],
        "model_type": "data2vec-audio",
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.ffn_dim,
        "hidden_act": "gelu",
        "feat_extract_activation": "gelu",
        "hidden_dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "feat_proj_dropout": config.feature_dropout,
        "layerdrop": config.layerdrop,
        "layer_norm_eps": config.layer_norm_eps,
        "conv_dim": [c for c, _, _ in config.conv_layers],
        "conv_kernel": [k for _, k, _ in config.conv_layers],
        "conv_stride": [s for _, _, s in config.conv_layers],
        "num_feat_extract_layers": len(config.conv_layers),
        "conv_bias": config.conv_bias,
        "num_conv_pos_embeddings": config.pos_conv_depth,
        "conv_pos_kernel_size": config.pos_conv_kernel,
        "num_conv_pos_embedding_groups": config.pos_conv_groups,
        # > 0 so that HF creates (and loads) masked_spec_embed
        "mask_time_prob": 0.05,
        "vocab_size": vocab_size or 32,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "add_adapter": False,
        # not an HF field: HF keeps it as an attribute and we read it back
        "pos_conv_mask_padding": config.pos_conv_mask_padding,
    }


def _split_hf_state(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """HF (or our) state dict -> (encoder state without `data2vec_audio.`, lm_head or None)."""
    encoder, ctc = {}, {}
    for key, value in state.items():
        if key.startswith("lm_head."):
            ctc[key[len("lm_head.") :]] = value
        elif key.startswith(HF_PREFIX):
            encoder[key[len(HF_PREFIX) :]] = value
        else:
            encoder[key] = value
    return encoder, (ctc or None)


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object file (config.json, vocab.json, ...); one-line `CheckpointError` naming it
    when it cannot be read, is not JSON or holds something else than an object."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(content).__name__}, not an object")
    return content


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    for name in _HF_WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".index.json"):
            weight_map = read_json_file(path).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{path}: no 'weight_map' object (not a shard index)")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_read_weight_file(directory / shard))
            return state
        return _read_weight_file(path)
    raise CheckpointError(f"{directory}: no weights found (looked for {list(_HF_WEIGHT_FILES)})")


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors or torch weight file; a damaged or foreign one raises `CheckpointError`."""
    if path.suffix != ".safetensors":
        return _torch_load(path, allow_pickle=False)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({' '.join(str(error).split())})"
        ) from error


def load_huggingface(
    directory: str | Path, pos_conv_mask_padding: bool | None = None
) -> LoadedCheckpoint:
    """Load a `save_pretrained` directory of `Data2VecAudioModel` or `Data2VecAudioForCTC`."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory}: no config.json (not a Hugging Face model directory)")
    config = hf_config_to_encoder_config(read_json_file(config_path), pos_conv_mask_padding)
    encoder_state, ctc_head = _split_hf_state(_read_hf_weights(directory))
    return _validated(
        LoadedCheckpoint(config, encoder_state, ctc_head=ctc_head, source_format=FORMAT_HF)
    )


def export_huggingface(
    checkpoint: LoadedCheckpoint | Data2VecAudioModel,
    directory: str | Path,
    ctc_head: nn.Linear | None = None,
) -> Path:
    """Write config.json + model.safetensors loadable by `transformers` `from_pretrained`.

    With a CTC head (in `checkpoint.ctc_head` or `ctc_head`) the directory holds a
    `Data2VecAudioForCTC` (keys prefixed `data2vec_audio.`, plus `lm_head`).
    """
    if isinstance(checkpoint, Data2VecAudioModel):
        checkpoint = LoadedCheckpoint.from_model(checkpoint, ctc_head=ctc_head)
    elif ctc_head is not None:
        checkpoint = LoadedCheckpoint(
            **{**checkpoint.__dict__, "ctc_head": _detached(ctc_head.state_dict())}
        )
    checkpoint = _validated(checkpoint)
    head = checkpoint.ctc_head
    hf_config = encoder_config_to_hf(
        checkpoint.config, None if head is None else int(head["weight"].shape[0])
    )
    if head is None:
        state = dict(checkpoint.encoder_state)
    else:
        state = {HF_PREFIX + key: value for key, value in checkpoint.encoder_state.items()}
        state.update({"lm_head." + key: value for key, value in head.items()})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state.items()}
    try:
        from safetensors.torch import save_file
    except ImportError:
        torch.save(tensors, directory / "pytorch_model.bin")
    else:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
