"""`load_checkpoint`: recognise a source's format and hand it to its reader; `load_encoder`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from d2v_speech.checkpoints.fairseq import (
    load_fairseq,
)
from d2v_speech.checkpoints.huggingface import (
    _read_weight_file,
    _split_hf_state,
    hf_config_to_encoder_config,
    load_huggingface,
)
from d2v_speech.checkpoints.loaded import (
    FORMAT_STATE_DICT,
    NATIVE_TAG,
    CheckpointError,
    LoadedCheckpoint,
    _validated,
)
from d2v_speech.checkpoints.native import (
    _load_native,
)
from d2v_speech.checkpoints.recipe import (
    _is_objective_state,
    load_objective_state,
    load_recipe_checkpoint,
)
from d2v_speech.checkpoints.s3prl_export import is_s3prl_checkpoint, load_s3prl
from d2v_speech.checkpoints.torch_files import (
    _torch_load,
)
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel


def _is_fairseq_layout(state: Mapping[str, Any]) -> bool:
    markers = (
        "post_extract_proj.",
        "w2v_encoder.",
        "mask_emb",
        "encoder.pos_conv.",
        "modality_encoders.",
    )
    return any(key.startswith(markers) for key in state)


def _as_config(config: EncoderConfig | Mapping[str, Any] | None) -> EncoderConfig | None:
    if config is None or isinstance(config, EncoderConfig):
        return config
    if "hidden_size" in config:
        return hf_config_to_encoder_config(config)
    return EncoderConfig.from_dict(dict(config))


def load_checkpoint(
    source: str | Path | Mapping[str, Any],
    config: EncoderConfig | Mapping[str, Any] | None = None,
    pos_conv_mask_padding: bool | None = None,
    allow_pickle: bool = False,
) -> LoadedCheckpoint:
    """Read any supported checkpoint into a `LoadedCheckpoint`.

    Parameters
    ----------
    source : path or dict
        HF directory, fairseq / native / state-dict file (.pt, .bin, .safetensors), one of our
        recipe's checkpoints (`CKPT+*` folder, its `objective.ckpt`, or the output / save folder:
        newest complete checkpoint), or a dict.
    config : EncoderConfig or dict, optional
        Architecture; required for raw state dicts, overrides the cfg of a fairseq file and the
        `hyperparams.yaml` of a recipe checkpoint. A dict with `hidden_size` is read as an HF
        config.json.
    pos_conv_mask_padding : bool, optional
        Override the padding behaviour of the positional conv (None keeps the source's value or
        our default True; False reproduces HF / fairseq exactly on padded batches).
    allow_pickle : bool
        Fall back to full unpickling for files that `weights_only` loading rejects (trusted files).
    """
    config = _as_config(config)
    if config is not None and pos_conv_mask_padding is not None:
        config = EncoderConfig.from_dict(
            {**config.to_dict(), "pos_conv_mask_padding": pos_conv_mask_padding}
        )
    path = None
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir() and (path / "config.json").exists():
            if config is not None:
                raise CheckpointError(f"{path}: a Hugging Face directory brings its own config")
            return load_huggingface(path, pos_conv_mask_padding)
        if path.is_dir():
            return load_recipe_checkpoint(path, config, pos_conv_mask_padding)
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist")
        content = (
            _read_weight_file(path)
            if path.suffix == ".safetensors"
            else _torch_load(path, allow_pickle)
        )
    else:
        content = source
    if not isinstance(content, Mapping):
        raise CheckpointError(f"checkpoint content is a {type(content).__name__}, not a dict")
    if content.get("format") == NATIVE_TAG:
        return _load_native(content, pos_conv_mask_padding)
    if "model" in content and ("cfg" in content or "args" in content):
        return load_fairseq(content, config, pos_conv_mask_padding)
    if is_s3prl_checkpoint(content):
        return load_s3prl(content, config, pos_conv_mask_padding)
    if _is_objective_state(content):
        if path is not None:
            return load_recipe_checkpoint(path, config, pos_conv_mask_padding, state=content)
        if config is None:
            raise CheckpointError("an objective state dict needs config=EncoderConfig(...)")
        return load_objective_state(content, config)
    if config is None:
        raise CheckpointError(
            "a raw state dict carries no architecture; pass config=EncoderConfig(...) "
            "(or a Hugging Face config dict)"
        )
    if _is_fairseq_layout(content):
        return load_fairseq({"model": content, "cfg": {}}, config)
    encoder_state, ctc_head = _split_hf_state(content)
    return _validated(
        LoadedCheckpoint(config, encoder_state, ctc_head=ctc_head, source_format=FORMAT_STATE_DICT)
    )


def load_encoder(
    source: str | Path | Mapping[str, Any], **kwargs: Any
) -> tuple[Data2VecAudioModel, nn.Linear | None]:
    """(`Data2VecAudioModel`, CTC head `nn.Linear` or None) from any supported checkpoint.

    Keyword arguments go to `load_checkpoint`.
    """
    checkpoint = load_checkpoint(source, **kwargs)
    return checkpoint.build_encoder(), checkpoint.build_ctc_head()
