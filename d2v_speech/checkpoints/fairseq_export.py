"""Write a `LoadedCheckpoint` as a fairseq data2vec / data2vec-aqc `.pt`: the inverse of `fairseq`.

The file is a dict ``{"args": None, "cfg": {"model": ..., "task": ...}, "model": state, ...}``
with the state in fairseq's key layout (anchors_compat A.4 / A.5):

- pretraining layout (no CTC head): encoder keys at the root (``post_extract_proj.*``,
  ``encoder.layers.{i}.self_attn.*``, ``mask_emb``, ...), the EMA teacher under ``_ema`` (keys
  relative to ``encoder.``, as fairseq's `EMAModule.fp32_params`), and the pretraining heads
  (``final_proj.*``; data2vec-aqc's ``quantizer.*``, ``project_q.*``, ``contr_proj.*``);
- fine-tuned layout (with a CTC head): ``w2v_encoder.w2v_model.`` + the same encoder and aqc
  heads, the CTC layer as ``w2v_encoder.proj.*``, and ``cfg.model.w2v_args`` holding the
  pretraining cfg. As fairseq's fine-tuning does (`remove_pretraining_modules`), this layout has
  no ``_ema`` and no ``final_proj``.

What a data2vec (1.0) fairseq model cannot hold raises `FormatError` naming every problem:
ALiBi (data2vec 2.0), a depth-1 positional conv (fairseq builds wav2vec 2.0's weight-normed conv
there), a positional kernel below 3, a LayerNorm epsilon other than 1e-5, a conv decoder head.
Our quantizer's ``_extra_state`` (temperature, update count) has no fairseq key: the update
count goes to ``optimizer_history[-1]["num_updates"]`` and fairseq derives the temperature
from it. `pos_conv_mask_padding` is a runtime choice of ours with no fairseq field: reading the
file back gives our default (True) unless `load_checkpoint(..., pos_conv_mask_padding=False)`,
which reproduces fairseq on padded batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from d2v_speech.checkpoints.fairseq import (
    CONV_NORM_KEYS,
    ENCODER_KEY_PAIRS,
    MODEL_KEY_PAIRS,
    OUR_CONV_NORM_KEY,
    rename_key,
    rename_table,
)
from d2v_speech.checkpoints.loaded import (
    FAIRSEQ_CTC_PREFIX,
    FAIRSEQ_FINETUNED_PREFIX,
    CheckpointError,
    LoadedCheckpoint,
    _validated,
)
from d2v_speech.nn.config import EncoderConfig

#: fairseq's LayerNorm has a fixed epsilon
FAIRSEQ_LAYER_NORM_EPS = 1e-5
#: the pretraining heads data2vec(-aqc) keeps at the model root
FAIRSEQ_HEAD_NAMES = ("final_proj", "quantizer", "project_q", "contr_proj")
_AQC_HEADS = ("quantizer", "project_q", "contr_proj")


class FormatError(CheckpointError):
    """The checkpoint cannot be written in the requested format (one line, every problem)."""


# our key -> fairseq key: the inverse of the reader's tables (`fairseq.ENCODER_KEY_PAIRS`, ...)
_TO_FAIRSEQ_ENCODER = rename_table(ENCODER_KEY_PAIRS, to_fairseq=True)
_TO_FAIRSEQ_MODEL = rename_table(MODEL_KEY_PAIRS, to_fairseq=True)
_TO_FAIRSEQ_CONV_NORM = {
    mode: rename_table([(key, OUR_CONV_NORM_KEY)], to_fairseq=True)
    for mode, key in CONV_NORM_KEYS.items()
}


def to_fairseq_encoder_key(key: str, extractor_mode: str = "layer_norm") -> str:
    """Our encoder key (`Data2VecAudioModel.state_dict()`) -> fairseq data2vec model key."""
    if key.startswith("encoder."):
        renamed = rename_key(key[len("encoder.") :], _TO_FAIRSEQ_ENCODER)
        renamed = None if renamed is None else "encoder." + renamed
    else:
        # every extractor mode but layer_norm keeps the first block's GroupNorm at index 2
        mode = "layer_norm" if extractor_mode == "layer_norm" else "group_norm"
        renamed = rename_key(key, _TO_FAIRSEQ_CONV_NORM[mode]) or rename_key(key, _TO_FAIRSEQ_MODEL)
    if renamed is None:
        raise FormatError(f"encoder key {key!r} has no place in the fairseq data2vec layout")
    return renamed


def fairseq_format_problems(config: EncoderConfig) -> list[str]:
    """What of `config` a fairseq / s3prl data2vec (1.0) model cannot express; [] if all fits."""
    problems = []
    if config.alibi:
        problems.append(
            "ALiBi attention bias (alibi=True, data2vec 2.0) does not exist in data2vec 1.0"
        )
    if config.pos_conv_depth < 2:
        problems.append(
            "pos_conv_depth=1 would build wav2vec 2.0's weight-normalised positional conv there"
        )
    if config.pos_conv_kernel < 3:
        problems.append(f"pos_conv_kernel={config.pos_conv_kernel}; the kernel is at least 3")
    if config.layer_norm_eps != FAIRSEQ_LAYER_NORM_EPS:
        problems.append(f"layer_norm_eps={config.layer_norm_eps}; LayerNorm eps is fixed at 1e-5")
    return problems


def check_fairseq_expressible(
    checkpoint: LoadedCheckpoint, target: str = "fairseq", source: str = ""
) -> None:
    """Raise `FormatError` (one line naming `source` and every problem) unless it fits."""
    problems = fairseq_format_problems(checkpoint.config)
    unknown_heads = sorted(set(checkpoint.heads) - set(FAIRSEQ_HEAD_NAMES))
    if unknown_heads and target == "fairseq":
        problems.append(f"head(s) {unknown_heads} (data2vec 2.0) do not exist in data2vec 1.0")
    if problems:
        where = f"{source}: " if source else ""
        raise FormatError(f"{where}cannot be exported to {target}: " + "; ".join(problems))


def _conv_spec(config: EncoderConfig) -> str:
    """conv_layers -> fairseq `conv_feature_layers`, e.g. "[(512, 10, 5), (512, 3, 2)]"."""
    return "[" + ", ".join(f"({c}, {k}, {s})" for c, k, s in config.conv_layers) + "]"


def encoder_config_to_fairseq(config: EncoderConfig) -> dict[str, Any]:
    """`EncoderConfig` -> fairseq `Data2VecAudioConfig` fields (cfg.model of a pretraining file).

    fairseq derives the positional kernel as max(3, conv_pos // pos_conv_depth), so
    conv_pos = kernel * depth gives the kernel back.
    """
    problems = fairseq_format_problems(config)
    if problems:
        raise FormatError(
            "cannot be expressed as a fairseq data2vec config: " + "; ".join(problems)
        )
    return {
        "_name": "data2vec_audio",
        "extractor_mode": "layer_norm" if config.extractor_mode == "layer_norm" else "default",
        "conv_feature_layers": _conv_spec(config),
        "conv_bias": config.conv_bias,
        "encoder_embed_dim": config.embed_dim,
        "encoder_layers": config.num_layers,
        "encoder_attention_heads": config.num_heads,
        "encoder_ffn_embed_dim": config.ffn_dim,
        "activation_fn": "gelu",
        "layer_type": "transformer",
        "layer_norm_first": config.layer_norm_first,
        "pos_conv_depth": config.pos_conv_depth,
        "conv_pos": config.pos_conv_kernel * config.pos_conv_depth,
        "conv_pos_groups": config.pos_conv_groups,
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "dropout_input": config.feature_dropout,
        "encoder_layerdrop": config.layerdrop,
    }


def _aqc_cfg(heads: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """data2vec-aqc fork cfg fields read off the heads' shapes (vars: (1, G * V, vq_dim / G))."""
    codebook = heads["quantizer"]["vars"]
    project_q = heads["project_q"]["weight"]  # (final_proj_dim, vq_dim)
    vq_dim = int(project_q.shape[1])
    groups = vq_dim // int(codebook.shape[-1])
    return {
        "latent_vars": int(codebook.shape[1]) // groups,
        "latent_groups": groups,
        "latent_dim": vq_dim,
        "final_proj_dim": int(project_q.shape[0]),
    }


def fairseq_encoder_state(checkpoint: LoadedCheckpoint) -> dict[str, torch.Tensor]:
    """Encoder state (our keys) -> fairseq keys at the model root.

    A missing `masked_spec_embed` (an HF export without masking) is written as zeros (D,):
    fairseq loads `mask_emb` strictly, and it is unused at inference.
    """
    mode = checkpoint.config.extractor_mode
    state = {to_fairseq_encoder_key(k, mode): v for k, v in checkpoint.encoder_state.items()}
    state.setdefault("mask_emb", torch.zeros(checkpoint.config.embed_dim))
    return state


def fairseq_teacher_state(teacher: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Teacher (`TransformerEncoder` keys) -> fairseq `_ema` (keys relative to `encoder.`)."""
    out = {}
    for key, value in teacher.items():
        renamed = rename_key(key, _TO_FAIRSEQ_ENCODER)
        if renamed is None:
            raise FormatError(f"teacher key {key!r} has no place in the fairseq _ema layout")
        out[renamed] = value
    return out


def _head_state(heads: Mapping[str, Mapping[str, Any]], names: tuple[str, ...]) -> dict:
    """`name.local` -> tensor for the named heads; the quantizer's `_extra_state` is left out."""
    return {
        f"{name}.{local}": value
        for name in names
        if name in heads
        for local, value in heads[name].items()
        if local != "_extra_state"
    }


def _update_count(checkpoint: LoadedCheckpoint) -> int | None:
    """The checkpoint's update count, else the one our quantizer's extra state records."""
    if checkpoint.num_updates is not None:
        return int(checkpoint.num_updates)
    extra = checkpoint.heads.get("quantizer", {}).get("_extra_state")
    if isinstance(extra, Mapping) and extra.get("num_updates") is not None:
        return int(extra["num_updates"])
    return None


def fairseq_configs(checkpoint: LoadedCheckpoint, normalize: bool) -> tuple[dict, dict]:
    """(cfg.model, cfg.task) of the pretraining layout; aqc fields when the aqc heads exist."""
    model_cfg = encoder_config_to_fairseq(checkpoint.config)
    if all(name in checkpoint.heads for name in ("quantizer", "project_q")):
        model_cfg.update(_aqc_cfg(checkpoint.heads))
    task_cfg = {"_name": "audio_pretraining", "normalize": normalize, "sample_rate": 16000}
    return model_cfg, task_cfg


def _finetuned(
    checkpoint: LoadedCheckpoint, model_cfg: dict, task_cfg: dict, state: dict
) -> tuple[dict, dict, dict]:
    """Pretraining (cfg.model, cfg.task, state) -> fairseq `wav2vec_ctc` fine-tuned layout."""
    config = checkpoint.config
    state = {FAIRSEQ_FINETUNED_PREFIX + key: value for key, value in state.items()}
    state.update({FAIRSEQ_CTC_PREFIX + k: v for k, v in checkpoint.ctc_head.items()})
    finetune_cfg = {
        "_name": "wav2vec_ctc",
        "w2v_args": {"model": model_cfg, "task": task_cfg},
        "normalize": task_cfg["normalize"],
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "dropout_input": config.feature_dropout,
        "layerdrop": config.layerdrop,
    }
    task = {"_name": "audio_finetuning", "normalize": task_cfg["normalize"], "labels": "ltr"}
    return finetune_cfg, task, state


def fairseq_checkpoint(
    checkpoint: LoadedCheckpoint, normalize: bool | None = None, source: str = ""
) -> dict[str, Any]:
    """The whole fairseq checkpoint dict (see the module docstring for the two layouts).

    `normalize` (task.normalize) defaults to the checkpoint's, else True: every data2vec /
    data2vec-aqc recipe (and ours) pretrains on zero-mean unit-variance waveforms.
    """
    checkpoint = _validated(checkpoint)
    check_fairseq_expressible(checkpoint, "fairseq", source)
    if normalize is None:
        normalize = True if checkpoint.normalize is None else bool(checkpoint.normalize)
    model_cfg, task_cfg = fairseq_configs(checkpoint, normalize)
    state = fairseq_encoder_state(checkpoint)
    if checkpoint.ctc_head is not None:
        state.update(_head_state(checkpoint.heads, _AQC_HEADS))
        model_cfg, task_cfg, state = _finetuned(checkpoint, model_cfg, task_cfg, state)
        history: dict[str, Any] = {}
    else:
        state.update(_head_state(checkpoint.heads, FAIRSEQ_HEAD_NAMES))
        if checkpoint.teacher_state is not None:
            state["_ema"] = fairseq_teacher_state(checkpoint.teacher_state)
        count = _update_count(checkpoint)
        history = {} if count is None else {"num_updates": count}
    # the entries fairseq's `_upgrade_state_dict` expects in every checkpoint
    history.update({"criterion_name": "model", "optimizer_name": None, "lr_scheduler_state": {}})
    return {
        "args": None,
        "cfg": {"model": model_cfg, "task": task_cfg},
        "model": state,
        "optimizer_history": [history],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }


def export_fairseq(
    checkpoint: LoadedCheckpoint, path: str | Path, normalize: bool | None = None, source: str = ""
) -> Path:
    """Write `fairseq_checkpoint(checkpoint)` to `path` (a `.pt` that `load_checkpoint` reads back).

    `source` names the input in error messages.
    """
    content = fairseq_checkpoint(checkpoint, normalize, source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path
