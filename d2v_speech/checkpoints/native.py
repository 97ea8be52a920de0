"""Our own single-file format (`save_native`): everything a `LoadedCheckpoint` holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from d2v_speech.checkpoints.loaded import (
    FORMAT_NATIVE,
    NATIVE_TAG,
    NATIVE_VERSION,
    CheckpointError,
    LoadedCheckpoint,
    _validated,
)
from d2v_speech.nn.config import EncoderConfig


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
