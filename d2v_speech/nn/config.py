"""Architecture of the data2vec audio encoder as one plain dataclass.

The field names are ours; `d2v_speech.checkpoints` maps them to and from the Hugging Face
`Data2VecAudioConfig` and the fairseq `Wav2Vec2Config` / `Data2VecAudioConfig` fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: fairseq `conv_feature_layers` default: 320x downsampling, 400-sample receptive field.
DEFAULT_CONV_LAYERS: list[tuple[int, int, int]] = (
    [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
)
EXTRACTOR_MODES = ("layer_norm", "group_norm")
_PROBABILITY_FIELDS = (
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "feature_dropout",
    "layerdrop",
)
_POSITIVE_INT_FIELDS = (
    "embed_dim",
    "num_layers",
    "num_heads",
    "ffn_dim",
    "pos_conv_depth",
    "pos_conv_kernel",
    "pos_conv_groups",
)


def _default_conv_layers() -> list[tuple[int, int, int]]:
    return list(DEFAULT_CONV_LAYERS)


@dataclass
class EncoderConfig:
    """Sizes and regularisation of `Data2VecAudioModel`.

    Defaults are data2vec / data2vec-aqc BASE (fairseq `base_librispeech.yaml`, which equals the
    Hugging Face `Data2VecAudioConfig` defaults apart from dropouts and LayerDrop).

    Attributes
    ----------
    conv_layers : list of (channels, kernel, stride)
        One entry per conv block of the waveform feature encoder.
    conv_bias : bool
        Whether the feature-encoder convolutions have a bias.
    extractor_mode : str
        "layer_norm" (LayerNorm over channels in every conv block, data2vec) or "group_norm"
        (GroupNorm(C, C) on the first block only, wav2vec 2.0 BASE).
    embed_dim, num_layers, num_heads, ffn_dim : int
        Transformer width, depth, attention heads and feed-forward width.
    dropout, attention_dropout, activation_dropout : float
        Residual / FFN-output dropout, attention-probability dropout, and the dropout after
        the FFN activation.
    feature_dropout : float
        Dropout on the projected CNN features (fairseq `dropout_input`, HF `feat_proj_dropout`).
    layerdrop : float
        Probability of skipping a whole Transformer layer in training.
    pos_conv_depth, pos_conv_kernel, pos_conv_groups : int
        Number of stacked positional conv layers, their kernel size and groups.
    pos_conv_mask_padding : bool
        Re-zero padded frames before every positional conv layer, so that an utterance in a padded
        batch gives exactly its stand-alone output. False reproduces HF/fairseq (zeroed once).
    layer_norm_first : bool
        Pre-LN layers plus a final LayerNorm after the last layer (wav2vec 2.0 "stable layer norm").
    layer_norm_eps : float
        Epsilon of every LayerNorm with parameters.
    alibi : bool
        data2vec 2.0's ALiBi attention bias (-slope_h |i - j|, one learned scale per head,
        ``encoder.alibi_scale``) on top of the positional conv. Hugging Face ``Data2VecAudio``
        has no such bias, so an encoder with it cannot be exported there.
    """

    conv_layers: list[tuple[int, int, int]] = field(default_factory=_default_conv_layers)
    conv_bias: bool = False
    extractor_mode: str = "layer_norm"
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feature_dropout: float = 0.0
    layerdrop: float = 0.05
    pos_conv_depth: int = 5
    pos_conv_kernel: int = 19
    pos_conv_groups: int = 16
    pos_conv_mask_padding: bool = True
    layer_norm_first: bool = False
    layer_norm_eps: float = 1e-5
    alibi: bool = False

    def __post_init__(self) -> None:
        self.conv_layers = _parse_conv_layers(self.conv_layers)
        if self.extractor_mode not in EXTRACTOR_MODES:
            raise ValueError(
                f"extractor_mode must be one of {EXTRACTOR_MODES}, got {self.extractor_mode!r}"
            )
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in _PROBABILITY_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.embed_dim % self.pos_conv_groups:
            raise ValueError(
                f"embed_dim={self.embed_dim} is not divisible by "
                f"pos_conv_groups={self.pos_conv_groups}"
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    # ------------------------------------------------------------------ sizes
    @property
    def cnn_dim(self) -> int:
        """Channels of the last conv block (the width of `extract_features`)."""
        return self.conv_layers[-1][0]

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def total_stride(self) -> int:
        """Waveform samples per output frame (320 for the default layout)."""
        return math.prod(stride for _, _, stride in self.conv_layers)

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame; also the shortest input that yields a frame (400)."""
        field_size, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field_size += (kernel - 1) * jump
            jump *= stride
        return field_size

    def num_frames(self, num_samples: int) -> int:
        """Frames for `num_samples` samples: floor((L - k) / s) + 1 per layer; 0 if too short."""
        length = int(num_samples)
        for _, kernel, stride in self.conv_layers:
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
        return length

    # ------------------------------------------------------------- conversion
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        """Build from a mapping of field names; unknown names raise a ValueError listing them."""
        if not isinstance(values, dict):
            raise ValueError(f"EncoderConfig.from_dict expects a dict, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown EncoderConfig field(s): {unknown}; valid fields are {sorted(known)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python mapping (conv layers as lists) that `from_dict` and YAML accept."""
        values = dataclasses.asdict(self)
        values["conv_layers"] = [list(layer) for layer in self.conv_layers]
        return values

    @classmethod
    def from_yaml(cls, path: str | Path) -> EncoderConfig:
        """Load a preset such as `hparams/model/base.yaml` (a flat mapping of field names)."""
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of EncoderConfig fields")
        try:
            return cls.from_dict(values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


def _parse_conv_layers(layers: Any) -> list[tuple[int, int, int]]:
    """Normalise YAML lists / tuples into a list of (channels, kernel, stride) int tuples."""
    if not isinstance(layers, list | tuple) or not layers:
        raise ValueError(
            f"conv_layers must be a non-empty list of (channels, kernel, stride), got {layers!r}"
        )
    parsed = []
    for index, layer in enumerate(layers):
        if (
            not isinstance(layer, list | tuple)
            or len(layer) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in layer)
        ):
            raise ValueError(
                f"conv_layers[{index}] must be 3 positive ints (channels, kernel, stride), "
                f"got {layer!r}"
            )
        parsed.append(tuple(layer))
    return parsed
