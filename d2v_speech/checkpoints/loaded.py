"""What every reader returns: `LoadedCheckpoint` (encoder, teacher, heads, CTC head, config),
the formats' names and constants, and the shape checks each loaded checkpoint passes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel

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
