"""Official fairseq data2vec / data2vec-aqc `.pt` files (pretrained or CTC fine-tuned): their cfg,
key renames and EMA teacher; data2vec 2.0 files go on to `fairseq_data2vec2`."""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Mapping
from typing import Any

import torch

from d2v_speech.checkpoints.loaded import (
    FAIRSEQ_CTC_PREFIX,
    FAIRSEQ_FINETUNED_PREFIX,
    FORMAT_FAIRSEQ,
    HEAD_NAMES,
    CheckpointError,
    LoadedCheckpoint,
    _validated,
)
from d2v_speech.nn.config import EncoderConfig

_CONV_SPEC_NODES = (ast.Expression, ast.List, ast.Tuple, ast.Constant, ast.BinOp, ast.Load)

_DEFAULT_FAIRSEQ_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"


def parse_conv_feature_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq `conv_feature_layers`, e.g. "[(512,10,5)] + [(512,3,2)]*4", without eval.

    Only list / tuple literals of ints, `+` between lists and `*` by an int are accepted.
    """
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as error:
        raise CheckpointError(f"conv_feature_layers {spec!r} is not a list expression") from error

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.List):
            return [evaluate(item) for item in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(evaluate(item) for item in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = evaluate(node.left), evaluate(node.right)
            if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
                return left + right
            if isinstance(node.op, ast.Mult) and isinstance(left, list) and type(right) is int:
                return left * right
        raise CheckpointError(
            f"conv_feature_layers {spec!r}: unsupported expression {ast.dump(node)[:80]}"
        )

    layers = evaluate(tree)
    if not isinstance(layers, list) or not all(
        isinstance(layer, tuple) and len(layer) == 3 for layer in layers
    ):
        raise CheckpointError(
            f"conv_feature_layers {spec!r} must be a list of (dim, kernel, stride) tuples"
        )
    return layers


def _plain(value: Any) -> Any:
    """Namespace / DictConfig / Mapping -> nested plain dicts."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _fairseq_cfgs(checkpoint: Mapping[str, Any]) -> tuple[dict, dict, dict | None]:
    """-> (pretraining model cfg, task cfg, fine-tuning model cfg or None)."""
    if checkpoint.get("cfg") is not None:
        cfg = _plain(checkpoint["cfg"])
        model_cfg, task_cfg = cfg.get("model") or {}, cfg.get("task") or {}
    elif checkpoint.get("args") is not None:
        model_cfg = task_cfg = _plain(checkpoint["args"])
    else:
        raise CheckpointError("fairseq checkpoint has neither 'cfg' nor 'args'")
    w2v_args = model_cfg.get("w2v_args")
    if w2v_args is None:
        return model_cfg, task_cfg, None
    w2v_args = _plain(w2v_args)
    # new style: {"model": ..., "task": ...}; old style: one flat Namespace
    pre_model = w2v_args.get("model", w2v_args)
    pre_task = w2v_args.get("task", w2v_args)
    finetune_task_normalize = task_cfg.get("normalize")
    if finetune_task_normalize is not None:
        pre_task = {**pre_task, "normalize": finetune_task_normalize}
    return pre_model, pre_task, model_cfg


def fairseq_cfg_to_encoder_config(
    model_cfg: Mapping[str, Any],
    finetune_cfg: Mapping[str, Any] | None = None,
    pos_conv_mask_padding: bool | None = None,
) -> EncoderConfig:
    """Architecture from a fairseq `Wav2Vec2Config`-style model cfg (missing keys: its defaults).

    Dropouts and LayerDrop of a fine-tuned checkpoint come from its fine-tuning cfg, which
    overrides the pretraining values in fairseq too.
    """
    if model_cfg.get("activation_fn", "gelu") != "gelu":
        raise CheckpointError(f"activation_fn={model_cfg['activation_fn']!r}; only gelu")
    if model_cfg.get("layer_type", "transformer") != "transformer":
        raise CheckpointError(f"layer_type={model_cfg['layer_type']!r}; only transformer")
    modes = {"layer_norm": "layer_norm", "default": "group_norm"}
    mode = model_cfg.get("extractor_mode", "default")
    if mode not in modes:
        raise CheckpointError(f"extractor_mode={mode!r}; expected one of {sorted(modes)}")
    depth = int(model_cfg.get("pos_conv_depth", 1))
    if depth < 2:
        raise CheckpointError(
            "pos_conv_depth=1 (the wav2vec 2.0 weight-normalised positional conv) is not "
            "supported; data2vec uses pos_conv_depth=5"
        )
    conv_spec = model_cfg.get("conv_feature_layers", _DEFAULT_FAIRSEQ_CONV)
    dropouts = {
        "dropout": model_cfg.get("dropout", 0.1),
        "attention_dropout": model_cfg.get("attention_dropout", 0.1),
        "activation_dropout": model_cfg.get("activation_dropout", 0.0),
        "feature_dropout": model_cfg.get("dropout_input", 0.0),
        "layerdrop": model_cfg.get("encoder_layerdrop", 0.0),
    }
    if finetune_cfg:
        renames = {"dropout_input": "feature_dropout", "layerdrop": "layerdrop"}
        for key in ("dropout", "attention_dropout", "activation_dropout", *renames):
            if finetune_cfg.get(key) is not None:
                dropouts[renames.get(key, key)] = finetune_cfg[key]
    return EncoderConfig(
        conv_layers=parse_conv_feature_layers(conv_spec)
        if isinstance(conv_spec, str)
        else [tuple(layer) for layer in conv_spec],
        conv_bias=bool(model_cfg.get("conv_bias", False)),
        extractor_mode=modes[mode],
        embed_dim=int(model_cfg.get("encoder_embed_dim", 768)),
        num_layers=int(model_cfg.get("encoder_layers", 12)),
        num_heads=int(model_cfg.get("encoder_attention_heads", 12)),
        ffn_dim=int(model_cfg.get("encoder_ffn_embed_dim", 3072)),
        pos_conv_depth=depth,
        pos_conv_kernel=max(3, int(model_cfg.get("conv_pos", 128)) // depth),
        pos_conv_groups=int(model_cfg.get("conv_pos_groups", 16)),
        pos_conv_mask_padding=EncoderConfig.pos_conv_mask_padding
        if pos_conv_mask_padding is None
        else pos_conv_mask_padding,
        layer_norm_first=bool(model_cfg.get("layer_norm_first", False)),
        **{key: float(value) for key, value in dropouts.items()},
    )


# fairseq data2vec key <-> our key, as templates: {i} a layer index, {p} weight or bias, {q} one of
# the attention projections. Both directions are derived from these pairs (import and export).
_PLACEHOLDERS = {"i": r"\d+", "p": "weight|bias", "q": "q|k|v|out"}
# relative to the Transformer encoder (`encoder.` in both layouts, and fairseq's `_ema`)
ENCODER_KEY_PAIRS = (
    ("pos_conv.{i}.0.{p}", "pos_conv_embed.layers.{i}.conv.{p}"),
    ("layer_norm.{p}", "layer_norm.{p}"),
    ("layers.{i}.self_attn.{q}_proj.{p}", "layers.{i}.attention.{q}_proj.{p}"),
    ("layers.{i}.self_attn_layer_norm.{p}", "layers.{i}.layer_norm.{p}"),
    ("layers.{i}.fc1.{p}", "layers.{i}.feed_forward.intermediate_dense.{p}"),
    ("layers.{i}.fc2.{p}", "layers.{i}.feed_forward.output_dense.{p}"),
    ("layers.{i}.final_layer_norm.{p}", "layers.{i}.final_layer_norm.{p}"),
)
# outside the Transformer encoder; the CNN blocks' norms depend on the extractor mode (below)
MODEL_KEY_PAIRS = (
    ("feature_extractor.conv_layers.{i}.0.{p}", "feature_extractor.conv_layers.{i}.conv.{p}"),
    ("post_extract_proj.{p}", "feature_projection.projection.{p}"),
    ("layer_norm.{p}", "feature_projection.layer_norm.{p}"),
    ("mask_emb", "masked_spec_embed"),
)
# the conv block norm sits inside Sequential(TransposeLast, LayerNorm, TransposeLast) at index 2
# (layer_norm mode) or at index 2 directly (group_norm mode, first block only)
CONV_NORM_KEYS = {
    "layer_norm": "feature_extractor.conv_layers.{i}.2.1.{p}",
    "group_norm": "feature_extractor.conv_layers.{i}.2.{p}",
}
OUR_CONV_NORM_KEY = "feature_extractor.conv_layers.{i}.layer_norm.{p}"

RenameTable = list[tuple[re.Pattern, str]]


def _rule(source: str, target: str) -> tuple[re.Pattern, str]:
    """A template pair -> (pattern matching `source`, replacement writing `target`)."""
    pattern = re.escape(source)
    for name, alternatives in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>{alternatives})")
    replacement = target
    for name in _PLACEHOLDERS:
        replacement = replacement.replace(f"{{{name}}}", f"\\g<{name}>")
    return re.compile(pattern), replacement


def rename_table(pairs, to_fairseq: bool) -> RenameTable:
    """Rules from (fairseq, ours) template pairs, in either direction."""
    return [_rule(ours, theirs) if to_fairseq else _rule(theirs, ours) for theirs, ours in pairs]


_FAIRSEQ_ENCODER_RENAMES = rename_table(ENCODER_KEY_PAIRS, to_fairseq=False)
_FAIRSEQ_MODEL_RENAMES = rename_table(
    (*MODEL_KEY_PAIRS, *((key, OUR_CONV_NORM_KEY) for key in CONV_NORM_KEYS.values())),
    to_fairseq=False,
)


def rename_key(key: str, table: RenameTable) -> str | None:
    """`key` renamed by the first rule whose pattern matches all of it; None if none does."""
    for pattern, replacement in table:
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    return None


def rename_fairseq_key(key: str) -> str | None:
    """fairseq model key (no `w2v_encoder.w2v_model.` prefix) -> our key; None if not encoder."""
    if key.startswith("encoder."):
        renamed = rename_key(key[len("encoder.") :], _FAIRSEQ_ENCODER_RENAMES)
        return None if renamed is None else "encoder." + renamed
    return rename_key(key, _FAIRSEQ_MODEL_RENAMES)


def _teacher_from_fairseq_ema(
    ema: Mapping[str, torch.Tensor], encoder_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """fairseq `_ema` (keys relative to `encoder.`, or to the model root) -> teacher state."""
    if any(key.startswith("encoder.") for key in ema):
        ema = {key[len("encoder.") :]: v for key, v in ema.items() if key.startswith("encoder.")}
    teacher, unknown = {}, []
    for key, value in ema.items():
        renamed = rename_key(key, _FAIRSEQ_ENCODER_RENAMES)
        if renamed is None:
            unknown.append(key)
        else:
            teacher[renamed] = value
    if unknown:
        raise CheckpointError(
            f"unknown keys in the fairseq _ema teacher ({len(unknown)}): {unknown}"
        )
    # pos_conv is copied from the student every step (EMA skip_keys), so it may be absent
    for key, value in encoder_state.items():
        if key.startswith("encoder.pos_conv_embed."):
            teacher.setdefault(key[len("encoder.") :], value)
    return teacher


def load_fairseq(
    checkpoint: Mapping[str, Any],
    config: EncoderConfig | None = None,
    pos_conv_mask_padding: bool | None = None,
) -> LoadedCheckpoint:
    """Convert an official fairseq data2vec / data2vec-aqc / data2vec 2.0 checkpoint dict."""
    from d2v_speech.checkpoints import fairseq_data2vec2  # it imports this module

    if fairseq_data2vec2.is_data2vec2_checkpoint(checkpoint):
        return fairseq_data2vec2.load_data2vec2(checkpoint, config, pos_conv_mask_padding)
    model_cfg, task_cfg, finetune_cfg = _fairseq_cfgs(checkpoint)
    if config is None:
        config = fairseq_cfg_to_encoder_config(model_cfg, finetune_cfg, pos_conv_mask_padding)
    state = checkpoint["model"]
    encoder_state: dict[str, torch.Tensor] = {}
    heads: dict[str, dict[str, torch.Tensor]] = {}
    ctc: dict[str, torch.Tensor] = {}
    ema = None
    unknown = []
    for key, value in state.items():
        if key.startswith(FAIRSEQ_CTC_PREFIX):
            ctc[key[len(FAIRSEQ_CTC_PREFIX) :]] = value
            continue
        local = (
            key[len(FAIRSEQ_FINETUNED_PREFIX) :]
            if key.startswith(FAIRSEQ_FINETUNED_PREFIX)
            else key
        )
        head = local.split(".", 1)[0]
        if local == "_ema":
            ema = value
        elif head in HEAD_NAMES and "." in local:
            heads.setdefault(head, {})[local.split(".", 1)[1]] = value
        elif (renamed := rename_fairseq_key(local)) is not None:
            encoder_state[renamed] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"unknown keys in the fairseq checkpoint ({len(unknown)}): {sorted(unknown)}"
        )
    teacher = None if ema is None else _teacher_from_fairseq_ema(ema, encoder_state)
    normalize = task_cfg.get("normalize")
    return _validated(
        LoadedCheckpoint(
            config=config,
            encoder_state=encoder_state,
            teacher_state=teacher,
            heads=heads,
            ctc_head=ctc or None,
            source_format=FORMAT_FAIRSEQ,
            normalize=None if normalize is None else bool(normalize),
            # a fine-tuned file counts fine-tuning updates, which place no pretraining schedule
            num_updates=None if finetune_cfg else _fairseq_num_updates(checkpoint),
        )
    )


def _fairseq_num_updates(checkpoint: Mapping[str, Any]) -> int | None:
    """The trainer's update count (`optimizer_history[-1]["num_updates"]`), if saved."""
    history = checkpoint.get("optimizer_history")
    if not history or not isinstance(history[-1], Mapping):
        return None
    count = history[-1].get("num_updates")
    return None if count is None else int(count)
