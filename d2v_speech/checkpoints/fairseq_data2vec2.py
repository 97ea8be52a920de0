"""Reading fairseq data2vec 2.0 audio checkpoints (`Data2VecMultiModel`, model `data2vec_multi`).

`load_checkpoint` (and `fairseq.load_fairseq`) hand such files here; the result is
an ordinary `LoadedCheckpoint` with `config.alibi` set, the conv decoder under `heads["decoder"]`
(its sizes in `decoder_config`) and the EMA teacher in `teacher_state`.

Key table (fairseq, relative to the model; ``P`` = ``modality_encoders.AUDIO.``; a fine-tuned
file prefixes every model key with ``w2v_encoder.w2v_model.`` and adds ``w2v_encoder.proj``)::

    P local_encoder.conv_layers.{i}.0.weight       feature_extractor.conv_layers.{i}.conv.weight
    P local_encoder.conv_layers.{i}.2.1.*          feature_extractor.conv_layers.{i}.layer_norm.*
      (.2.* in group_norm mode, first block only)
    P project_features.1.*                         feature_projection.layer_norm.*
    P project_features.2.*                         feature_projection.projection.*
    P relative_positional_encoder.{j+1}.0.*        encoder.pos_conv_embed.layers.{j}.conv.*
    P context_encoder.norm.*                       encoder.layer_norm.*
    P alibi_scale (1, 1, H, 1, 1)                  encoder.alibi_scale (H,)
    P context_encoder.blocks.{j}.<block>           encoder.layers.{j}.<block>  (prenet, Large)
    blocks.{i}.<block>                             encoder.layers.{prenet_depth + i}.<block>
    <block> attn.qkv.* (3D rows: q, k, v)          attention.{q,k,v}_proj.*
    <block> attn.proj.*                            attention.out_proj.*
    <block> norm1.* / norm2.*                      layer_norm.* / final_layer_norm.*
    <block> mlp.fc1.*                              feed_forward.intermediate_dense.*
    <block> mlp.fc2.*                              feed_forward.output_dense.*
    P decoder.blocks.{i}.0.*                       heads["decoder"] blocks.{i}.conv.*
    P decoder.proj.*                               heads["decoder"] proj.*
    _ema (a dict inside `model`)                   teacher_state (see `teacher_from_data2vec2_ema`)
    w2v_encoder.proj.*                             ctc_head

Dropped on purpose: ``P encoder_mask`` (a fine-tuning mask embedding of older code, which
fairseq itself drops unless ``zero_mask``), the encoders of other modalities
(``modality_encoders.IMAGE.*`` / ``TEXT.*``; fairseq drops them when fine-tuning on audio) and an
EMA copy of the CNN and projection (``ema_local_encoder``: our teacher shares the student's).
Layer norms without affine parameters (positional conv, decoder) and the ALiBi slopes have no
weights. Anything else raises.

Not expressible here, so refused: pre-LN blocks (``layer_norm_first``; fairseq's pre-LN
``AltBlock`` also drops the residual around its MLP), ``norm_affine=False``,
``conv_pos_pre_ln``, extra (CLS) tokens, learned ALiBi biases, one ALiBi scale per layer, and a
decoder projection of more than one layer. fairseq keeps the feature-projection LayerNorm at eps
1e-5 whatever ``norm_eps`` says; our `layer_norm_eps` (= ``norm_eps``) covers it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from d2v_speech.checkpoints.fairseq import (
    _fairseq_cfgs,
    _fairseq_num_updates,
    parse_conv_feature_layers,
)
from d2v_speech.checkpoints.loaded import (
    FAIRSEQ_CTC_PREFIX,
    FAIRSEQ_FINETUNED_PREFIX,
    FORMAT_FAIRSEQ_DATA2VEC2,
    CheckpointError,
    LoadedCheckpoint,
    _validated,
    infer_decoder_config,
)
from d2v_speech.nn.config import EncoderConfig

__all__ = [
    "MODEL_NAME",
    "data2vec2_cfg_to_encoder_config",
    "data2vec2_decoder_config",
    "is_data2vec2_checkpoint",
    "load_data2vec2",
    "teacher_from_data2vec2_ema",
    "without_alibi",
]

#: fairseq's registered model name (`cfg.model._name`, or `w2v_args.model._name` fine-tuned)
MODEL_NAME = "data2vec_multi"
AUDIO_PREFIX = "modality_encoders.AUDIO."
_DEFAULT_SPEC = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
#: fairseq `D2vDecoderConfig` defaults (the audio yamls override kernel 7 and 4 layers)
_DECODER_DEFAULTS = {
    "decoder_dim": 384,
    "decoder_groups": 16,
    "decoder_kernel": 5,
    "decoder_layers": 5,
    "decoder_residual": True,
    "projection_layers": 1,
}

_BLOCK_RENAMES = [
    (re.compile(r"norm1\.(weight|bias)"), r"layer_norm.\1"),
    (re.compile(r"norm2\.(weight|bias)"), r"final_layer_norm.\1"),
    (re.compile(r"attn\.proj\.(weight|bias)"), r"attention.out_proj.\1"),
    (re.compile(r"mlp\.fc1\.(weight|bias)"), r"feed_forward.intermediate_dense.\1"),
    (re.compile(r"mlp\.fc2\.(weight|bias)"), r"feed_forward.output_dense.\1"),
]
_QKV = re.compile(r"attn\.qkv\.(weight|bias)")
_MAIN_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_PRENET_BLOCK = re.compile(r"context_encoder\.blocks\.(\d+)\.(.+)")
#: transformer parts inside the audio encoder (student and EMA teacher), relative to AUDIO_PREFIX
_CONTEXT_RENAMES = [
    (re.compile(r"context_encoder\.norm\.(weight|bias)"), r"encoder.layer_norm.\1"),
]
_POS_CONV = re.compile(r"relative_positional_encoder\.(\d+)\.0\.(weight|bias)")
#: student-only parts, relative to AUDIO_PREFIX
_LOCAL_RENAMES = [
    (
        re.compile(r"local_encoder\.conv_layers\.(\d+)\.0\.(weight|bias)"),
        r"feature_extractor.conv_layers.\1.conv.\2",
    ),
    (
        re.compile(r"local_encoder\.conv_layers\.(\d+)\.2\.(?:1\.)?(weight|bias)"),
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    (re.compile(r"project_features\.1\.(weight|bias)"), r"feature_projection.layer_norm.\1"),
    (re.compile(r"project_features\.2\.(weight|bias)"), r"feature_projection.projection.\1"),
    (re.compile(r"decoder\.blocks\.(\d+)\.0\.(weight|bias)"), r"decoder.blocks.\1.conv.\2"),
    (re.compile(r"decoder\.proj\.(weight|bias)"), r"decoder.proj.\1"),
]
_DROPPED_AUDIO = frozenset({"encoder_mask"})


# ---------------------------------------------------------------------------- detection / cfg
def _model_name(checkpoint: Mapping[str, Any]) -> str:
    try:
        model_cfg, _, _ = _fairseq_cfgs(checkpoint)
    except CheckpointError:
        return ""
    return str(model_cfg.get("_name") or "")


def is_data2vec2_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """True for a fairseq `data2vec_multi` checkpoint dict (by its cfg or by its keys)."""
    if _model_name(checkpoint) == MODEL_NAME:
        return True
    state = checkpoint.get("model")
    if not isinstance(state, Mapping):
        return False
    return any(
        str(key).removeprefix(FAIRSEQ_FINETUNED_PREFIX).startswith("modality_encoders.")
        for key in state
    )


def _audio_cfg(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    return dict((model_cfg.get("modalities") or {}).get("audio") or {})


def _refuse_unsupported(model_cfg: Mapping[str, Any], audio: Mapping[str, Any]) -> None:
    """Raise `CheckpointError` for options our encoder cannot reproduce exactly."""
    modality = model_cfg.get("supported_modality")
    if modality is not None and str(modality).rsplit(".", 1)[-1] != "AUDIO":
        raise CheckpointError(f"data2vec 2.0 supported_modality={modality!r}; only AUDIO is read")
    refused = {
        "layer_norm_first": (
            model_cfg.get("layer_norm_first", False),
            "pre-LN blocks are not supported (fairseq's pre-LN AltBlock also loses the residual "
            "around its MLP)",
        ),
        "norm_affine": (
            not model_cfg.get("norm_affine", True),
            "LayerNorms without weights are not supported",
        ),
        "conv_pos_pre_ln": (audio.get("conv_pos_pre_ln", False), "is not supported"),
        "num_extra_tokens": (int(audio.get("num_extra_tokens", 0)) > 0, "(CLS tokens) unsupported"),
        "learned_alibi": (audio.get("learned_alibi", False), "(a learned bias) is not supported"),
        "learned_alibi_scale_per_layer": (
            audio.get("use_alibi_encoder", False)
            and audio.get("learned_alibi_scale_per_layer", False),
            "is not supported (one ALiBi scale per head, shared by all layers)",
        ),
    }
    for name, (bad, reason) in refused.items():
        if bad:
            raise CheckpointError(f"data2vec 2.0 cfg {name}: {reason}")
    mode = audio.get("extractor_mode", "layer_norm")
    if mode not in ("layer_norm", "default"):
        raise CheckpointError(f"data2vec 2.0 extractor_mode={mode!r}; expected layer_norm/default")


def data2vec2_cfg_to_encoder_config(
    model_cfg: Mapping[str, Any],
    finetune_cfg: Mapping[str, Any] | None = None,
    pos_conv_mask_padding: bool | None = None,
) -> EncoderConfig:
    """Architecture from a fairseq `Data2VecMultiConfig` (missing keys: fairseq's defaults).

    Layers = `depth` + `modalities.audio.prenet_depth` (the prenet blocks come first); the
    positional-conv kernel is max(3, conv_pos_width // conv_pos_depth); `dropout` is
    `encoder_dropout`. A fine-tuning cfg overrides dropouts and LayerDrop, as in fairseq.
    """
    audio = _audio_cfg(model_cfg)
    _refuse_unsupported(model_cfg, audio)
    spec = audio.get("feature_encoder_spec", _DEFAULT_SPEC)
    embed_dim = int(model_cfg.get("embed_dim", 768))
    depth = int(audio.get("conv_pos_depth", 5))
    dropouts = {
        "dropout": model_cfg.get("encoder_dropout", 0.1),
        "attention_dropout": model_cfg.get("attention_dropout", 0.1),
        "activation_dropout": model_cfg.get("activation_dropout", 0.0),
        "feature_dropout": model_cfg.get("dropout_input", 0.0),
        "layerdrop": model_cfg.get("layerdrop", 0.0),
    }
    renames = {"dropout_input": "feature_dropout"}
    for key in ("dropout", "attention_dropout", "activation_dropout", "dropout_input", "layerdrop"):
        if finetune_cfg and finetune_cfg.get(key) is not None:
            dropouts[renames.get(key, key)] = finetune_cfg[key]
    return EncoderConfig(
        conv_layers=parse_conv_feature_layers(spec)
        if isinstance(spec, str)
        else [tuple(layer) for layer in spec],
        conv_bias=False,  # fairseq's AudioEncoder hard-codes it
        extractor_mode="group_norm" if audio.get("extractor_mode") == "default" else "layer_norm",
        embed_dim=embed_dim,
        num_layers=int(model_cfg.get("depth", 8)) + int(audio.get("prenet_depth", 4)),
        num_heads=int(model_cfg.get("num_heads", 12)),
        ffn_dim=int(embed_dim * float(model_cfg.get("mlp_ratio", 4.0))),
        pos_conv_depth=depth,
        pos_conv_kernel=max(3, int(audio.get("conv_pos_width", 95)) // depth),
        pos_conv_groups=int(audio.get("conv_pos_groups", 16)),
        pos_conv_mask_padding=EncoderConfig.pos_conv_mask_padding
        if pos_conv_mask_padding is None
        else pos_conv_mask_padding,
        layer_norm_first=False,
        layer_norm_eps=float(model_cfg.get("norm_eps", 1e-6)),
        alibi=bool(audio.get("use_alibi_encoder", False)),
        **{key: float(value) for key, value in dropouts.items()},
    )


def data2vec2_decoder_config(model_cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """`ConvDecoder1d` keyword arguments (all but embed_dim) from `modalities.audio.decoder`."""
    audio = _audio_cfg(model_cfg)
    if "decoder" in audio and audio["decoder"] is None:
        return None
    values = {**_DECODER_DEFAULTS, **(audio.get("decoder") or {})}
    if int(values["projection_layers"]) != 1:
        raise CheckpointError(
            f"data2vec 2.0 decoder projection_layers={values['projection_layers']}; only a "
            "single Linear projection is supported"
        )
    return {
        "decoder_dim": int(values["decoder_dim"]),
        "kernel": int(values["decoder_kernel"]),
        "num_layers": int(values["decoder_layers"]),
        "groups": int(values["decoder_groups"]),
        "residual": bool(values["decoder_residual"]),
    }


# ---------------------------------------------------------------------------- keys
def _rename(key: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, replacement in table:
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    return None


def _block_entries(layer: int, key: str, value: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """One AltBlock tensor -> our `encoder.layers.{layer}.*` tensors (qkv split in three)."""
    prefix = f"encoder.layers.{layer}."
    if match := _QKV.fullmatch(key):
        if value.shape[0] % 3:
            raise CheckpointError(f"attn.qkv of layer {layer} has {value.shape[0]} rows, not 3*D")
        parts = value.chunk(3, dim=0)
        return [
            (f"{prefix}attention.{name}_proj.{match.group(1)}", part.clone())
            for name, part in zip("qkv", parts)
        ]
    renamed = _rename(key, _BLOCK_RENAMES)
    return [] if renamed is None else [(prefix + renamed, value)]


def _alibi_scale(value: torch.Tensor, num_heads: int) -> torch.Tensor:
    """fairseq (L, 1, H|1, 1, 1) (older files: 4-D without L) -> our (H,)."""
    if value.dim() == 4:
        value = value.unsqueeze(0)
    if value.dim() != 5 or value.shape[0] != 1 or value[0].numel() not in (1, num_heads):
        raise CheckpointError(
            f"alibi_scale of shape {tuple(value.shape)}: expected (1, 1, {num_heads}, 1, 1) "
            "(one scale per head shared by all layers)"
        )
    return value.reshape(-1).expand(num_heads).clone()


def _transformer_entries(
    key: str, value: torch.Tensor, prenet_depth: int, num_heads: int
) -> list[tuple[str, torch.Tensor]] | None:
    """Parts that the EMA teacher also holds; None when `key` is not one of them."""
    if match := _MAIN_BLOCK.fullmatch(key):
        layer, rest = prenet_depth + int(match.group(1)), match.group(2)
        return _block_entries(layer, rest, value) or None
    if not key.startswith(AUDIO_PREFIX):
        return None
    local = key[len(AUDIO_PREFIX) :]
    if local == "alibi_scale":
        return [("encoder.alibi_scale", _alibi_scale(value, num_heads))]
    if match := _PRENET_BLOCK.fullmatch(local):
        return _block_entries(int(match.group(1)), match.group(2), value) or None
    if (match := _POS_CONV.fullmatch(local)) and int(match.group(1)) >= 1:
        index = int(match.group(1)) - 1
        return [(f"encoder.pos_conv_embed.layers.{index}.conv.{match.group(2)}", value)]
    renamed = _rename(local, _CONTEXT_RENAMES)
    return None if renamed is None else [(renamed, value)]


def _student_entries(
    key: str, value: torch.Tensor, prenet_depth: int, num_heads: int
) -> list[tuple[str, torch.Tensor]] | None:
    """Model key -> our keys (`decoder.*` for the decoder); [] when dropped, None if unknown."""
    found = _transformer_entries(key, value, prenet_depth, num_heads)
    if found is not None:
        return found
    if key.startswith("modality_encoders.") and not key.startswith(AUDIO_PREFIX):
        return []
    local = key.removeprefix(AUDIO_PREFIX)
    if key.startswith(AUDIO_PREFIX) and local in _DROPPED_AUDIO:
        return []
    renamed = _rename(local, _LOCAL_RENAMES) if key.startswith(AUDIO_PREFIX) else None
    return None if renamed is None else [(renamed, value)]


def _prenet_depth(keys: list[str]) -> int:
    pattern = re.compile(re.escape(AUDIO_PREFIX) + r"context_encoder\.blocks\.(\d+)\.")
    found = {int(m.group(1)) for key in keys if (m := pattern.match(key))}
    return max(found) + 1 if found else 0


def teacher_from_data2vec2_ema(
    ema: Mapping[str, torch.Tensor],
    encoder_state: Mapping[str, torch.Tensor],
    prenet_depth: int,
    num_heads: int,
) -> dict[str, torch.Tensor]:
    """fairseq `_ema` -> teacher state (keys relative to our `encoder.`).

    With `ema_encoder_only: false` (the audio yamls) `_ema` holds the whole teacher model
    without CNN, projection and decoder: blocks, positional conv, `context_encoder.norm` and
    `alibi_scale`, named as in the model. With `ema_encoder_only: true` it holds only the main
    blocks (keys `{i}.attn...`); the teacher then runs the student's positional conv, LayerNorm,
    ALiBi scale and prenet blocks, which fill the rest here.
    """
    keys = [str(key) for key in ema]
    if keys and all(key.split(".", 1)[0].isdigit() for key in keys):
        ema = {f"blocks.{key}": value for key, value in ema.items()}
    teacher, unknown = {}, []
    for key, value in ema.items():
        if key.startswith((AUDIO_PREFIX + "local_encoder.", AUDIO_PREFIX + "project_features.")):
            continue  # ema_local_encoder: our teacher shares the student's CNN and projection
        entries = _transformer_entries(key, value, prenet_depth, num_heads)
        if entries is None:
            unknown.append(key)
            continue
        teacher.update({ours[len("encoder.") :]: tensor for ours, tensor in entries})
    if unknown:
        raise CheckpointError(f"unknown keys in the data2vec 2.0 _ema ({len(unknown)}): {unknown}")
    main_blocks = re.compile(r"encoder\.layers\.(\d+)\.")
    for key, value in encoder_state.items():
        block = main_blocks.match(key)
        if key.startswith("encoder.") and (block is None or int(block.group(1)) < prenet_depth):
            teacher.setdefault(key[len("encoder.") :], value)
    return teacher


# ---------------------------------------------------------------------------- loading
def _split_state(
    state: Mapping[str, Any], num_heads: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
    """-> (encoder state, decoder state, CTC head, `_ema` or None); raises on unknown keys."""
    prenet = _prenet_depth([str(key).removeprefix(FAIRSEQ_FINETUNED_PREFIX) for key in state])
    encoder, decoder, ctc, ema, unknown = {}, {}, {}, None, []
    for key, value in state.items():
        if key.startswith(FAIRSEQ_CTC_PREFIX):
            ctc[key[len(FAIRSEQ_CTC_PREFIX) :]] = value
            continue
        local = key.removeprefix(FAIRSEQ_FINETUNED_PREFIX)
        if local == "_ema":
            ema = value
            continue
        entries = _student_entries(local, value, prenet, num_heads)
        if entries is None:
            unknown.append(key)
        for ours, tensor in entries or []:
            if ours.startswith("decoder."):
                decoder[ours[len("decoder.") :]] = tensor
            else:
                encoder[ours] = tensor
    if unknown:
        raise CheckpointError(
            f"unknown keys in the fairseq data2vec 2.0 checkpoint ({len(unknown)}): "
            f"{sorted(unknown)}"
        )
    if ema is not None:
        if not isinstance(ema, Mapping):
            raise CheckpointError(f"_ema is a {type(ema).__name__}, not a dict of tensors")
        ema = teacher_from_data2vec2_ema(ema, encoder, prenet, num_heads)
    return encoder, decoder, ctc, ema


def load_data2vec2(
    checkpoint: Mapping[str, Any],
    config: EncoderConfig | None = None,
    pos_conv_mask_padding: bool | None = None,
) -> LoadedCheckpoint:
    """Convert a fairseq data2vec 2.0 audio checkpoint dict (pretrained or CTC fine-tuned).

    `config` overrides the cfg's architecture. The decoder config comes from the cfg (a
    fine-tuned file keeps it in `w2v_args`, without the weights), else from the weights.
    """
    model_cfg, task_cfg, finetune_cfg = _fairseq_cfgs(checkpoint)
    if config is None:
        config = data2vec2_cfg_to_encoder_config(model_cfg, finetune_cfg, pos_conv_mask_padding)
    encoder, decoder, ctc, teacher = _split_state(checkpoint["model"], config.num_heads)
    decoder_config = data2vec2_decoder_config(model_cfg) if model_cfg else None
    if decoder and decoder_config is None:
        decoder_config = infer_decoder_config(decoder, config.embed_dim)
    normalize = task_cfg.get("normalize")
    return _validated(
        LoadedCheckpoint(
            config=config,
            encoder_state=encoder,
            teacher_state=teacher,
            heads={"decoder": decoder} if decoder else {},
            ctc_head=ctc or None,
            source_format=FORMAT_FAIRSEQ_DATA2VEC2,
            normalize=None if normalize is None else bool(normalize),
            num_updates=None if finetune_cfg else _fairseq_num_updates(checkpoint),
            decoder_config=decoder_config,
        )
    )


def without_alibi(checkpoint: LoadedCheckpoint) -> LoadedCheckpoint:
    """A copy with `config.alibi` False and `alibi_scale` removed from student and teacher.

    The encoder then computes something else than the one it was trained as (no ALiBi bias);
    meant for exporting to Hugging Face `Data2VecAudio`, which has no such bias, and then
    fine-tuning or re-training there.
    """
    config = EncoderConfig.from_dict({**checkpoint.config.to_dict(), "alibi": False})
    teacher = checkpoint.teacher_state
    return LoadedCheckpoint(
        **{
            **checkpoint.__dict__,
            "config": config,
            "encoder_state": {
                k: v for k, v in checkpoint.encoder_state.items() if k != "encoder.alibi_scale"
            },
            "teacher_state": None
            if teacher is None
            else {k: v for k, v in teacher.items() if k != "alibi_scale"},
        }
    )
