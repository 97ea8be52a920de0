"""Import and export of data2vec encoder weights.

Sources understood by `load_checkpoint`:

- a Hugging Face `save_pretrained` directory of `Data2VecAudioModel` / `Data2VecAudioForCTC`
  (config.json + model.safetensors or pytorch_model.bin, sharded or not);
- a raw Hugging Face-layout state dict (our own `Data2VecAudioModel.state_dict()` has the same
  keys), given with `config=`;
- an official fairseq data2vec / data2vec-aqc `.pt`, pretrained or CTC fine-tuned
  (`{"model": ..., "cfg": ...}` or the older `{"model": ..., "args": Namespace}`);
- a fairseq data2vec 2.0 audio `.pt` (`data2vec_multi`), pretrained or CTC fine-tuned: ALiBi
  encoder, conv decoder and EMA teacher (`d2v_speech.checkpoint_data2vec2`);
- a native file written by `save_native` (keeps teacher, pretraining heads and CTC head);
- a checkpoint of our pretraining recipe: a `CKPT+<stamp>` folder, its `objective.ckpt`
  (`Data2VecObjective` / `AQCObjective` state dict), or an output / save folder (the newest
  complete checkpoint is used); the architecture comes from the experiment's `hyperparams.yaml`.

`export_huggingface` writes a directory that `transformers.Data2VecAudioModel.from_pretrained`
(or `Data2VecAudioForCTC` when a CTC head exists) loads; an ALiBi encoder (data2vec 2.0) cannot
go there.

Command line::

    python -m d2v_speech.checkpoints inspect SRC
    python -m d2v_speech.checkpoints convert SRC DST      # DST dir -> HF, DST *.pt -> native
    python -m d2v_speech.checkpoints convert results/pretrain/aqc_tiny/1234 DST.pt --to native
"""

from __future__ import annotations

import argparse
import ast
import json
import pickle
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from torch import nn

from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.presets import load_model_config

FORMAT_HF = "huggingface"
FORMAT_STATE_DICT = "state_dict"
FORMAT_FAIRSEQ = "fairseq"
FORMAT_FAIRSEQ_DATA2VEC2 = "fairseq_data2vec2"
FORMAT_NATIVE = "d2v_speech"
FORMAT_RECIPE = "d2v_speech_recipe"
NATIVE_TAG = "d2v_speech.checkpoint"
NATIVE_VERSION = 1

#: pretraining modules of data2vec(-aqc) and data2vec 2.0 that are not part of the encoder
HEAD_NAMES = ("final_proj", "quantizer", "project_q", "contr_proj", "decoder")
#: what `describe` calls each source format
FORMAT_NAMES = {FORMAT_FAIRSEQ_DATA2VEC2: "fairseq data2vec 2.0 (data2vec_multi)"}
#: present in HF only when masking is configured; not needed for inference
OPTIONAL_ENCODER_KEYS = frozenset({"masked_spec_embed"})
HF_PREFIX = "data2vec_audio."
FAIRSEQ_FINETUNED_PREFIX = "w2v_encoder.w2v_model."
FAIRSEQ_CTC_PREFIX = "w2v_encoder.proj."
_DEFAULT_FAIRSEQ_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_NATIVE_SUFFIXES = (".pt", ".pth", ".ckpt")
#: SpeechBrain's checkpoint folder prefix and meta file (written last by AtomicCheckpointer)
CKPT_FOLDER_PREFIX = "CKPT+"
CKPT_META_FILE = "CKPT.yaml"
#: the recipe's recoverable name for the objective, and SpeechBrain's saved experiment YAML
RECIPE_OBJECTIVE_FILE = "objective.ckpt"
RECIPE_HPARAMS_FILE = "hyperparams.yaml"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the encoder."""


@dataclass
class LoadedCheckpoint:
    """Everything a checkpoint holds, in our naming.

    Attributes
    ----------
    config : EncoderConfig
        Architecture of the encoder.
    encoder_state : dict
        State dict of `Data2VecAudioModel` (Hugging Face key layout).
    teacher_state : dict or None
        EMA teacher, as a `TransformerEncoder` state dict (keys relative to `encoder.`).
    heads : dict of dict
        Pretraining modules by name (`final_proj`, `quantizer`, `project_q`, `contr_proj`,
        `decoder`), each a state dict relative to that module, as stored by the source.
        The quantizer's may also hold `_extra_state` {"num_updates", "temperature"} (ours).
        `decoder` is data2vec 2.0's `ConvDecoder1d` (`blocks.{i}.conv.*`, `proj.*`).
    ctc_head : dict or None
        {"weight": (V, D), "bias": (V,)} of a fine-tuned CTC output layer; index 0 is the blank.
    source_format : str
        "huggingface", "state_dict", "fairseq", "fairseq_data2vec2", "d2v_speech" or
        "d2v_speech_recipe".
    normalize : bool or None
        Whether the source expects zero-mean unit-variance waveforms (fairseq `task.normalize`);
        None when the source does not say.
    num_updates : int or None
        Position of the pretraining schedules (EMA decay, Gumbel temperature) when saved: the
        fairseq trainer's update count of a pretraining checkpoint, or our EMA teacher's count;
        None when the source does not record it.
    decoder_config : dict or None
        `ConvDecoder1d` keyword arguments other than embed_dim (`decoder_dim`, `kernel`,
        `num_layers`, `groups`, `residual`) where the source records them (a data2vec 2.0
        cfg, fine-tuned ones included); `build_decoder` infers them from the weights otherwise.
    """

    config: EncoderConfig
    encoder_state: dict[str, torch.Tensor]
    teacher_state: dict[str, torch.Tensor] | None = None
    heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    ctc_head: dict[str, torch.Tensor] | None = None
    source_format: str = FORMAT_STATE_DICT
    normalize: bool | None = None
    num_updates: int | None = None
    decoder_config: dict[str, Any] | None = None

    @classmethod
    def from_model(
        cls,
        model: Data2VecAudioModel,
        ctc_head: nn.Linear | None = None,
        teacher: nn.Module | None = None,
        heads: Mapping[str, nn.Module] | None = None,
        normalize: bool | None = None,
    ) -> LoadedCheckpoint:
        """Snapshot a live model (and optional CTC head, teacher encoder, pretraining heads)."""
        return cls(
            config=model.config,
            encoder_state=_detached(model.state_dict()),
            teacher_state=None if teacher is None else _detached(teacher.state_dict()),
            heads={name: _detached(module.state_dict()) for name, module in (heads or {}).items()},
            ctc_head=None if ctc_head is None else _detached(ctc_head.state_dict()),
            source_format=FORMAT_NATIVE,
            normalize=normalize,
        )

    def build_encoder(self) -> Data2VecAudioModel:
        """A `Data2VecAudioModel` holding `encoder_state`."""
        model = Data2VecAudioModel(self.config)
        check_state_dict(
            self.encoder_state,
            expected_encoder_shapes(self.config),
            "encoder",
            OPTIONAL_ENCODER_KEYS,
        )
        model.load_state_dict(self.encoder_state, strict=False)
        return model

    def build_ctc_head(self) -> nn.Linear | None:
        """An `nn.Linear(D, V)` holding `ctc_head`, or None."""
        if self.ctc_head is None:
            return None
        vocab_size = self.ctc_head["weight"].shape[0]
        head = nn.Linear(self.config.embed_dim, vocab_size)
        check_state_dict(
            self.ctc_head, {k: v.shape for k, v in head.state_dict().items()}, "CTC head"
        )
        head.load_state_dict(self.ctc_head)
        return head

    def build_decoder(self) -> nn.Module | None:
        """data2vec 2.0's `ConvDecoder1d` holding `heads["decoder"]`, or None."""
        from d2v_speech.nn.conv_decoder import ConvDecoder1d

        state = self.heads.get("decoder")
        if state is None:
            return None
        config = self.decoder_config or infer_decoder_config(state, self.config.embed_dim)
        check_decoder_state(state, self.config.embed_dim, config)
        decoder = ConvDecoder1d(self.config.embed_dim, **config)
        decoder.load_state_dict(state)
        return decoder


def _detached(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}


# ---------------------------------------------------------------------------- validation
def expected_encoder_shapes(config: EncoderConfig) -> dict[str, torch.Size]:
    """Key -> shape of `Data2VecAudioModel(config).state_dict()`, built on the meta device."""
    with torch.device("meta"):
        model = Data2VecAudioModel(config)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    if config.alibi:
        shapes.setdefault("encoder.alibi_scale", torch.Size([config.num_heads]))
    return shapes


def infer_decoder_config(state: Mapping[str, Any], embed_dim: int) -> dict[str, Any]:
    """`ConvDecoder1d` sizes read off its weights (`residual` cannot be seen: True)."""
    first = state.get("blocks.0.conv.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 3 or embed_dim % first.shape[1]:
        raise CheckpointError(
            "decoder state is not a ConvDecoder1d (needs blocks.{i}.conv.* and proj.*): keys "
            f"{sorted('decoder.' + str(key) for key in state)}"
        )
    layers = {key.split(".")[1] for key in state if re.fullmatch(r"blocks\.\d+\.conv\.weight", key)}
    return {
        "decoder_dim": int(first.shape[0]),
        "kernel": int(first.shape[2]),
        "num_layers": len(layers),
        "groups": embed_dim // int(first.shape[1]),
        "residual": True,
    }


def check_decoder_state(
    state: Mapping[str, Any], embed_dim: int, decoder_config: Mapping[str, Any]
) -> None:
    """Raise `CheckpointError` unless `state` fits `ConvDecoder1d(embed_dim, **decoder_config)`."""
    from d2v_speech.nn.conv_decoder import ConvDecoder1d

    try:
        with torch.device("meta"):
            decoder = ConvDecoder1d(embed_dim, **decoder_config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"decoder config {dict(decoder_config)}: {error}") from error
    check_state_dict(
        {"decoder." + key: value for key, value in state.items() if key != "_extra_state"},
        {"decoder." + key: value.shape for key, value in decoder.state_dict().items()},
        "decoder",
    )


def check_state_dict(
    state: Mapping[str, Any],
    expected: Mapping[str, torch.Size],
    what: str,
    optional: frozenset[str] = frozenset(),
) -> None:
    """Raise `CheckpointError` naming every unknown, missing and mis-shaped key."""
    problems = []
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state) - optional)
    misshaped = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(shape)}"
        for key, shape in expected.items()
        if key in state and (not isinstance(state[key], torch.Tensor) or state[key].shape != shape)
    ]
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {unknown}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing}")
    if misshaped:
        problems.append(f"mis-shaped keys ({len(misshaped)}): {misshaped}")
    if problems:
        raise CheckpointError(f"{what} state does not fit the architecture: " + "; ".join(problems))


# ---------------------------------------------------------------------------- Hugging Face
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


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    for name in _HF_WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".index.json"):
            weight_map = json.loads(path.read_text())["weight_map"]
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_read_weight_file(directory / shard))
            return state
        return _read_weight_file(path)
    raise CheckpointError(f"{directory}: no weights found (looked for {list(_HF_WEIGHT_FILES)})")


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_huggingface(
    directory: str | Path, pos_conv_mask_padding: bool | None = None
) -> LoadedCheckpoint:
    """Load a `save_pretrained` directory of `Data2VecAudioModel` or `Data2VecAudioForCTC`."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory}: no config.json (not a Hugging Face model directory)")
    config = hf_config_to_encoder_config(json.loads(config_path.read_text()), pos_conv_mask_padding)
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


# ---------------------------------------------------------------------------- fairseq
_CONV_SPEC_NODES = (ast.Expression, ast.List, ast.Tuple, ast.Constant, ast.BinOp, ast.Load)


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


_FAIRSEQ_ENCODER_RENAMES = [
    (re.compile(r"pos_conv\.(\d+)\.0\.(weight|bias)"), r"pos_conv_embed.layers.\1.conv.\2"),
    (re.compile(r"layer_norm\.(weight|bias)"), r"layer_norm.\1"),
    (
        re.compile(r"layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)"),
        r"layers.\1.attention.\2_proj.\3",
    ),
    (re.compile(r"layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)"), r"layers.\1.layer_norm.\2"),
    (
        re.compile(r"layers\.(\d+)\.fc1\.(weight|bias)"),
        r"layers.\1.feed_forward.intermediate_dense.\2",
    ),
    (re.compile(r"layers\.(\d+)\.fc2\.(weight|bias)"), r"layers.\1.feed_forward.output_dense.\2"),
    (
        re.compile(r"layers\.(\d+)\.final_layer_norm\.(weight|bias)"),
        r"layers.\1.final_layer_norm.\2",
    ),
]
_FAIRSEQ_MODEL_RENAMES = [
    (
        re.compile(r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)"),
        r"feature_extractor.conv_layers.\1.conv.\2",
    ),
    # layer_norm mode nests (TransposeLast, LayerNorm, TransposeLast); group_norm mode does not
    (
        re.compile(r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)"),
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    (
        re.compile(r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)"),
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    (re.compile(r"post_extract_proj\.(weight|bias)"), r"feature_projection.projection.\1"),
    (re.compile(r"layer_norm\.(weight|bias)"), r"feature_projection.layer_norm.\1"),
    (re.compile(r"mask_emb"), r"masked_spec_embed"),
]


def _rename(key: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, replacement in table:
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    return None


def rename_fairseq_key(key: str) -> str | None:
    """fairseq model key (no `w2v_encoder.w2v_model.` prefix) -> our key; None if not encoder."""
    if key.startswith("encoder."):
        renamed = _rename(key[len("encoder.") :], _FAIRSEQ_ENCODER_RENAMES)
        return None if renamed is None else "encoder." + renamed
    return _rename(key, _FAIRSEQ_MODEL_RENAMES)


def _teacher_from_fairseq_ema(
    ema: Mapping[str, torch.Tensor], encoder_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """fairseq `_ema` (keys relative to `encoder.`, or to the model root) -> teacher state."""
    if any(key.startswith("encoder.") for key in ema):
        ema = {key[len("encoder.") :]: v for key, v in ema.items() if key.startswith("encoder.")}
    teacher, unknown = {}, []
    for key, value in ema.items():
        renamed = _rename(key, _FAIRSEQ_ENCODER_RENAMES)
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
    from d2v_speech import checkpoint_data2vec2

    if checkpoint_data2vec2.is_data2vec2_checkpoint(checkpoint):
        return checkpoint_data2vec2.load_data2vec2(checkpoint, config, pos_conv_mask_padding)
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


# ---------------------------------------------------------------------------- native
def save_native(checkpoint: LoadedCheckpoint, path: str | Path) -> Path:
    """Write everything (config, encoder, teacher, heads, CTC head) to one torch file."""
    checkpoint = _validated(checkpoint)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": NATIVE_TAG,
            "version": NATIVE_VERSION,
            "config": checkpoint.config.to_dict(),
            "encoder": checkpoint.encoder_state,
            "teacher": checkpoint.teacher_state,
            "heads": checkpoint.heads,
            "ctc_head": checkpoint.ctc_head,
            "normalize": checkpoint.normalize,
            "num_updates": checkpoint.num_updates,
            "decoder_config": checkpoint.decoder_config,
        },
        path,
    )
    return path


def _load_native(
    content: Mapping[str, Any], pos_conv_mask_padding: bool | None
) -> LoadedCheckpoint:
    if content.get("version") != NATIVE_VERSION:
        raise CheckpointError(f"unsupported d2v_speech checkpoint version {content.get('version')}")
    config_values = dict(content["config"])
    if pos_conv_mask_padding is not None:
        config_values["pos_conv_mask_padding"] = pos_conv_mask_padding
    return _validated(
        LoadedCheckpoint(
            config=EncoderConfig.from_dict(config_values),
            encoder_state=dict(content["encoder"]),
            teacher_state=content.get("teacher"),
            heads=dict(content.get("heads") or {}),
            ctc_head=content.get("ctc_head"),
            source_format=FORMAT_NATIVE,
            normalize=content.get("normalize"),
            num_updates=content.get("num_updates"),
            decoder_config=content.get("decoder_config"),
        )
    )


# ---------------------------------------------------------------------------- our recipe
class _Tagged(NamedTuple):
    """A hyperpyyaml `!tag:target` node read without building it."""

    tag: str
    value: Any


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads a hyperpyyaml file without importing or calling anything it names."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return _Tagged("!" + suffix, value)


_TagTolerantLoader.add_multi_constructor("!", _construct_tagged)

_PRESET_LOADERS = ("!apply:d2v_speech.nn.presets.load_model_config",)
_CONFIG_CLASSES = ("!new:d2v_speech.nn.config.EncoderConfig", "!new:d2v_speech.nn.EncoderConfig")


def _call_arguments(node: _Tagged) -> tuple[list, dict]:
    if isinstance(node.value, list):
        return list(node.value), {}
    if isinstance(node.value, dict):
        return [], dict(node.value)
    return ([node.value] if node.value not in (None, "") else []), {}


def read_recipe_hparams(path: str | Path) -> tuple[EncoderConfig, bool | None]:
    """(encoder config, waveform normalisation) of an experiment's `hyperparams.yaml`.

    The config is what the recipe built: `model_config` when it calls
    `d2v_speech.nn.presets.load_model_config` (preset plus any overridden fields) or
    `EncoderConfig`, or is a plain mapping of fields; otherwise `model_preset`. Nothing the
    YAML names is imported or run. Normalisation is `train_audio_pipeline`'s `normalize`.
    """
    from hyperpyyaml import resolve_references

    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        values = yaml.load(resolve_references(handle).getvalue(), Loader=_TagTolerantLoader)
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: not a mapping of hyperparameters")
    node = values.get("model_config")
    try:
        if isinstance(node, _Tagged) and node.tag in _PRESET_LOADERS + _CONFIG_CLASSES:
            args, kwargs = _call_arguments(node)
            build = load_model_config if node.tag in _PRESET_LOADERS else EncoderConfig
            config = build(*args, **kwargs)
        elif isinstance(node, _Tagged):
            raise CheckpointError(
                f"model_config is built by {node.tag}, which is not read without running it; "
                "pass config=EncoderConfig(...) (CLI: --config)"
            )
        elif isinstance(node, dict):
            config = EncoderConfig.from_dict(node)
        elif values.get("model_preset"):
            config = load_model_config(values["model_preset"])
        else:
            raise CheckpointError("neither model_config nor model_preset is set")
    except (TypeError, ValueError, FileNotFoundError) as error:
        raise CheckpointError(f"{path}: cannot read the encoder config: {error}") from error
    pipeline = values.get("train_audio_pipeline")
    normalize = None
    if isinstance(pipeline, _Tagged) and isinstance(pipeline.value, dict):
        normalize = pipeline.value.get("normalize")
    return config, None if normalize is None else bool(normalize)


def complete_checkpoint_folders(folder: str | Path) -> list[Path]:
    """`CKPT+*` folders directly under `folder` that have their `CKPT.yaml`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.iterdir()
        if path.is_dir()
        and path.name.startswith(CKPT_FOLDER_PREFIX)
        and (path / CKPT_META_FILE).is_file()
    ]
    return sorted(found, key=lambda path: (_checkpoint_time(path), path.name))


def _checkpoint_time(folder: Path) -> float:
    """SpeechBrain's `unixtime` meta entry (what its own recovery sorts by), else the mtime."""
    try:
        meta = yaml.safe_load((folder / CKPT_META_FILE).read_text(encoding="utf-8"))
        return float(meta["unixtime"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return (folder / CKPT_META_FILE).stat().st_mtime


def find_recipe_checkpoint(path: str | Path) -> Path:
    """The `objective.ckpt` meant by `path`.

    `path` is that file, a `CKPT+<stamp>` folder, or a folder holding checkpoint folders
    directly (the save folder) or one level down (the output folder); then the newest complete
    checkpoint is used.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.name.startswith(CKPT_FOLDER_PREFIX):
        if not (path / CKPT_META_FILE).is_file():
            raise CheckpointError(
                f"{path} has no {CKPT_META_FILE}: its save was interrupted, so it is incomplete"
            )
        folder = path
    else:
        candidates = complete_checkpoint_folders(path) + [
            ckpt
            for child in sorted(path.iterdir())
            if child.is_dir()
            for ckpt in complete_checkpoint_folders(child)
        ]
        if not candidates:
            raise CheckpointError(
                f"{path}: neither a Hugging Face directory (no config.json) nor a recipe output "
                f"(no {CKPT_FOLDER_PREFIX}* folder with {CKPT_META_FILE} in it or one level down)"
            )
        folder = max(candidates, key=lambda ckpt: (_checkpoint_time(ckpt), ckpt.name))
    objective = folder / RECIPE_OBJECTIVE_FILE
    if not objective.is_file():
        raise CheckpointError(f"{folder}: no {RECIPE_OBJECTIVE_FILE} in this checkpoint")
    return objective


def _find_recipe_hparams(objective_file: Path) -> Path | None:
    """`hyperparams.yaml` next to the checkpoint folder, its save folder or the output folder."""
    for folder in list(objective_file.resolve().parents)[:4]:
        if (folder / RECIPE_HPARAMS_FILE).is_file():
            return folder / RECIPE_HPARAMS_FILE
    return None


def _is_objective_state(content: Mapping[str, Any]) -> bool:
    return "_extra_state" in content and any(str(key).startswith("model.") for key in content)


def load_objective_state(
    state: Mapping[str, Any], config: EncoderConfig, normalize: bool | None = None
) -> LoadedCheckpoint:
    """Convert `Data2VecObjective` / `AQCObjective.state_dict()` (our recipe's checkpoint).

    `model.*` is the encoder, `final_proj` / `quantizer` / `project_q` / `contr_proj` the heads
    (the quantizer's `_extra_state` included), `_extra_state["teacher"]` the EMA teacher.
    """
    encoder_state: dict[str, torch.Tensor] = {}
    heads: dict[str, dict[str, Any]] = {}
    unknown = []
    for key, value in state.items():
        prefix, _, local = key.partition(".")
        if key == "_extra_state":
            continue
        if prefix == "model" and local:
            encoder_state[local] = value
        elif prefix in HEAD_NAMES and local:
            heads.setdefault(prefix, {})[local] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"unknown keys in the objective checkpoint ({len(unknown)}): {sorted(unknown)}"
        )
    extra = state["_extra_state"]
    teacher = extra.get("teacher") if isinstance(extra, Mapping) else None
    if teacher is not None and (
        not isinstance(teacher, Mapping) or not {"model", "num_updates"} <= set(teacher)
    ):
        raise CheckpointError(
            "objective _extra_state['teacher'] must hold 'model' and 'num_updates' "
            "(EMATeacher.state_dict())"
        )
    return _validated(
        LoadedCheckpoint(
            config=config,
            encoder_state=encoder_state,
            teacher_state=None if teacher is None else dict(teacher["model"]),
            heads=heads,
            source_format=FORMAT_RECIPE,
            normalize=normalize,
            num_updates=None if teacher is None else int(teacher["num_updates"]),
        )
    )


def load_recipe_checkpoint(
    path: str | Path,
    config: EncoderConfig | None = None,
    pos_conv_mask_padding: bool | None = None,
    state: Mapping[str, Any] | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint of our pretraining recipe (see `find_recipe_checkpoint` for `path`).

    The architecture is `config` when given, else the experiment's `hyperparams.yaml` (found
    next to the checkpoint, its save folder or output folder). `state`: the already loaded file.
    """
    objective_file = find_recipe_checkpoint(path)
    normalize = None
    if config is None:
        hparams_file = _find_recipe_hparams(objective_file)
        if hparams_file is None:
            raise CheckpointError(
                f"{objective_file}: no {RECIPE_HPARAMS_FILE} found in the folders above it to "
                "read the architecture from; pass config=EncoderConfig(...) (CLI: --config)"
            )
        config, normalize = read_recipe_hparams(hparams_file)
        if pos_conv_mask_padding is not None:
            config = EncoderConfig.from_dict(
                {**config.to_dict(), "pos_conv_mask_padding": pos_conv_mask_padding}
            )
    if state is None:
        state = _torch_load(objective_file, allow_pickle=False)
    if not isinstance(state, Mapping) or not _is_objective_state(state):
        raise CheckpointError(
            f"{objective_file}: not an objective state dict (needs model.* keys and _extra_state)"
        )
    return load_objective_state(state, config, normalize)


# ---------------------------------------------------------------------------- dispatch
def _validated(checkpoint: LoadedCheckpoint) -> LoadedCheckpoint:
    """Check encoder, teacher and CTC head against the architecture; return unchanged."""
    expected = expected_encoder_shapes(checkpoint.config)
    check_state_dict(checkpoint.encoder_state, expected, "encoder", OPTIONAL_ENCODER_KEYS)
    if checkpoint.teacher_state is not None:
        teacher_expected = {
            key[len("encoder.") :]: shape
            for key, shape in expected.items()
            if key.startswith("encoder.")
        }
        check_state_dict(checkpoint.teacher_state, teacher_expected, "teacher")
    head = checkpoint.ctc_head
    if head is not None:
        vocab = head["weight"].shape[0] if isinstance(head.get("weight"), torch.Tensor) else 0
        dim = checkpoint.config.embed_dim
        check_state_dict(
            head, {"weight": torch.Size([vocab, dim]), "bias": torch.Size([vocab])}, "CTC head"
        )
    decoder = checkpoint.heads.get("decoder")
    if decoder is not None:
        dim = checkpoint.config.embed_dim
        config = checkpoint.decoder_config or infer_decoder_config(decoder, dim)
        check_decoder_state(decoder, dim, config)
    return checkpoint


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a PyTorch file, judged from its first bytes; None if it may be."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "an empty file (0 bytes)"
    # torch.save writes a zip archive ("PK\x03\x04"); the legacy format is a pickle ("\x80")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    text = all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head)
    kind = "a text file, not" if text else "not"
    return f"{kind} a PyTorch checkpoint (it starts with {head[:12]!r})"


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    reason = _not_a_checkpoint(path)
    if reason is not None:
        raise CheckpointError(f"{path}: {reason}")
    try:
        return _torch_load_checked(path, allow_pickle)
    except (EOFError, RuntimeError, OSError) as error:
        detail = str(error).strip().split(". ")[0][:160] if str(error).strip() else "end of file"
        raise CheckpointError(
            f"{path}: a damaged PyTorch file ({type(error).__name__}: {detail}); "
            "a truncated copy or an interrupted save?"
        ) from error


def _torch_load_checked(path: Path, allow_pickle: bool) -> Any:
    try:
        # fairseq checkpoints of the older style keep their cfg in an argparse.Namespace
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            reason = str(error).strip().splitlines()[-1][:300]
            raise CheckpointError(
                f"{path}: cannot be read with torch.load(weights_only=True) ({reason}). If you "
                "trust the file, pass allow_pickle=True (CLI: --allow-pickle)"
            ) from error
        return torch.load(path, map_location="cpu", weights_only=False)


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


# ---------------------------------------------------------------------------- CLI
def describe(checkpoint: LoadedCheckpoint) -> str:
    """Human-readable summary used by `inspect`."""
    num_params = sum(value.numel() for value in checkpoint.encoder_state.values())
    name = FORMAT_NAMES.get(checkpoint.source_format)
    lines = [
        f"format: {checkpoint.source_format}" + (f" = {name}" if name else ""),
        f"encoder: {len(checkpoint.encoder_state)} tensors, {num_params / 1e6:.2f} M values",
        f"alibi: {'on' if checkpoint.config.alibi else 'off'}",
        f"teacher: {'yes' if checkpoint.teacher_state is not None else 'no'}",
        _describe_decoder(checkpoint),
        "heads: "
        + (
            ", ".join(
                f"{name} {sorted((k, _summary(v)) for k, v in head.items())}"
                for name, head in sorted(checkpoint.heads.items())
            )
            or "none"
        ),
        "ctc_head: "
        + (
            "none"
            if checkpoint.ctc_head is None
            else f"vocab {checkpoint.ctc_head['weight'].shape[0]} (blank = 0)"
        ),
        f"normalize: {checkpoint.normalize}",
        f"num_updates: {checkpoint.num_updates}",
        "config: " + json.dumps(checkpoint.config.to_dict()),
    ]
    return "\n".join(lines)


def _describe_decoder(checkpoint: LoadedCheckpoint) -> str:
    state = checkpoint.heads.get("decoder")
    config = checkpoint.decoder_config
    if config is None and state is not None:
        config = infer_decoder_config(state, checkpoint.config.embed_dim)
    if config is None:
        return "decoder: none"
    sizes = ", ".join(f"{key} {value}" for key, value in config.items())
    return f"decoder: {'present' if state is not None else 'config only, no weights'} ({sizes})"


def _summary(value: Any) -> Any:
    """Shape of a tensor; other entries (a quantizer's extra state) as they are."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else value


def _add_source_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "src",
        help="HF directory, fairseq .pt, native .pt, state dict, or a pretraining recipe's "
        "CKPT+* folder / objective.ckpt / output folder",
    )


def _add_common_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", help="EncoderConfig YAML, needed for raw state dicts")
    command.add_argument("--allow-pickle", action="store_true", help="fully unpickle trusted files")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m d2v_speech.checkpoints`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m d2v_speech.checkpoints", description="Inspect or convert checkpoints."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = commands.add_parser("inspect", help="print what a checkpoint holds")
    _add_source_arguments(inspect_cmd)
    _add_common_options(inspect_cmd)
    convert_cmd = commands.add_parser("convert", help="convert to an HF directory or native file")
    _add_source_arguments(convert_cmd)
    convert_cmd.add_argument("dst", help="directory (HF) or .pt/.pth/.ckpt file (native)")
    convert_cmd.add_argument("--to", choices=["hf", "native"], help="override the DST format")
    _add_common_options(convert_cmd)
    args = parser.parse_args(argv)
    target = None
    try:
        config = EncoderConfig.from_yaml(args.config) if args.config else None
        checkpoint = load_checkpoint(args.src, config=config, allow_pickle=args.allow_pickle)
        if args.command == "inspect":
            print(describe(checkpoint))
            return 0
        target = args.to or ("native" if args.dst.endswith(_NATIVE_SUFFIXES) else "hf")
        if target == "native":
            save_native(checkpoint, args.dst)
        else:
            export_huggingface(checkpoint, args.dst)
    except (CheckpointError, ValueError, OSError) as error:
        hint = ""
        if args.command == "convert" and target == "hf" and isinstance(error, CheckpointError):
            hint = " (a native file keeps everything: --to native, or a DST ending in .pt)"
        print(f"error: {error}{hint}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst} ({target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
