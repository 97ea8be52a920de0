"""s3prl "converted" data2vec checkpoints, the files s3prl's `data2vec_custom` upstream loads.

s3prl 0.4.18 (`s3prl.upstream.data2vec.expert.UpstreamExpert`) reads, with `torch.load`, a dict

- ``task_cfg``: fairseq `AudioPretrainingConfig` fields; ``normalize`` makes it layer-normalise
  each waveform, as data2vec pretraining did;
- ``model_cfg``: fairseq `Data2VecAudioConfig` fields (s3prl drops the ones it does not know);
- ``model_weight``: the fairseq data2vec state dict. s3prl deletes its ``_ema`` entry (which
  must exist) and loads the rest strictly into its copy of the fairseq model, so only encoder
  keys may remain: the aqc heads, ``final_proj``, the EMA teacher and a CTC head are not
  written (SUPERB trains its own downstream heads on the hidden states).

`export_s3prl` writes that dict (``_ema`` empty); `load_s3prl` reads one back (ours or one that
s3prl's `convert.py` made from a fairseq checkpoint) through the fairseq reader. What fairseq
cannot express (ALiBi, ...) s3prl cannot either: `FormatError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from d2v_speech.checkpoints.fairseq import load_fairseq
from d2v_speech.checkpoints.fairseq_export import (
    FormatError,
    check_fairseq_expressible,
    encoder_config_to_fairseq,
    fairseq_encoder_state,
)
from d2v_speech.checkpoints.loaded import (
    CheckpointError,
    LoadedCheckpoint,
    _validated,
)
from d2v_speech.nn.config import EncoderConfig

FORMAT_S3PRL = "s3prl"
S3PRL_KEYS = ("task_cfg", "model_cfg", "model_weight")
#: what s3prl's data2vec expert reports as `get_downsample_rates` (fixed, not read off the cfg)
S3PRL_DOWNSAMPLE_RATE = 320

__all__ = [
    "FORMAT_S3PRL",
    "S3PRL_KEYS",
    "FormatError",
    "export_s3prl",
    "is_s3prl_checkpoint",
    "load_s3prl",
    "s3prl_checkpoint",
]


def is_s3prl_checkpoint(content: Mapping[str, Any]) -> bool:
    """Whether a loaded dict has the three entries of an s3prl converted checkpoint."""
    return all(key in content for key in S3PRL_KEYS)


def s3prl_checkpoint(
    checkpoint: LoadedCheckpoint, normalize: bool | None = None, source: str = ""
) -> dict[str, Any]:
    """{"task_cfg", "model_cfg", "model_weight"} for s3prl's data2vec upstream.

    `normalize` defaults to the checkpoint's, else True (data2vec pretrains on zero-mean
    unit-variance waveforms). An encoder whose total conv stride is not 320 raises
    `FormatError`: s3prl's expert reports a fixed downsample rate of 320 to SUPERB.
    """
    checkpoint = _validated(checkpoint)
    check_fairseq_expressible(checkpoint, "s3prl", source)
    stride = checkpoint.config.total_stride
    if stride != S3PRL_DOWNSAMPLE_RATE:
        where = f"{source}: " if source else ""
        raise FormatError(
            f"{where}cannot be exported to s3prl: the conv layers downsample by {stride}, and "
            f"s3prl's data2vec upstream assumes {S3PRL_DOWNSAMPLE_RATE}"
        )
    if normalize is None:
        normalize = True if checkpoint.normalize is None else bool(checkpoint.normalize)
    weights: dict[str, Any] = fairseq_encoder_state(checkpoint)
    weights["_ema"] = {}
    return {
        "task_cfg": {"_name": "audio_pretraining", "normalize": normalize, "sample_rate": 16000},
        "model_cfg": encoder_config_to_fairseq(checkpoint.config),
        "model_weight": weights,
    }


def export_s3prl(
    checkpoint: LoadedCheckpoint, path: str | Path, normalize: bool | None = None, source: str = ""
) -> Path:
    """Write `s3prl_checkpoint(checkpoint)` to `path`; `source` names the input in errors."""
    content = s3prl_checkpoint(checkpoint, normalize, source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def load_s3prl(
    content: Mapping[str, Any],
    config: EncoderConfig | None = None,
    pos_conv_mask_padding: bool | None = None,
) -> LoadedCheckpoint:
    """A converted s3prl data2vec dict -> `LoadedCheckpoint` (source_format "s3prl").

    An empty ``_ema`` (as `export_s3prl` writes) means no teacher; a full one (s3prl's own
    conversion of a fairseq file keeps it) becomes the teacher, as in a fairseq file.
    """
    missing = [key for key in S3PRL_KEYS if key not in content]
    if missing:
        raise CheckpointError(f"not an s3prl converted checkpoint: no {missing}")
    weights = dict(content["model_weight"])
    if not weights.get("_ema", True):
        del weights["_ema"]
    fairseq_like = {
        "cfg": {"model": dict(content["model_cfg"]), "task": dict(content["task_cfg"])},
        "model": weights,
    }
    loaded = load_fairseq(fairseq_like, config, pos_conv_mask_padding)
    return dataclasses.replace(loaded, source_format=FORMAT_S3PRL)
