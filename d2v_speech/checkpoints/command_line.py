"""`python -m d2v_speech.checkpoints inspect | convert` (to hf, native, fairseq or s3prl).

`convert` also writes the export's model card (`model_card`): ``DST/README.md`` for an hf
directory, ``DST.with_suffix(".md")`` beside a native, fairseq or s3prl file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from d2v_speech.checkpoints.dispatch import (
    load_checkpoint,
)
from d2v_speech.checkpoints.fairseq_export import (
    export_fairseq,
)
from d2v_speech.checkpoints.huggingface import (
    export_huggingface,
)
from d2v_speech.checkpoints.loaded import (
    _NATIVE_SUFFIXES,
    FORMAT_NAMES,
    FORMAT_RECIPE,
    CheckpointError,
    LoadedCheckpoint,
    infer_decoder_config,
)
from d2v_speech.checkpoints.model_card import render_model_card, write_model_card
from d2v_speech.checkpoints.native import (
    save_native,
)
from d2v_speech.checkpoints.recipe import find_recipe_checkpoint
from d2v_speech.checkpoints.run_record import read_training_run
from d2v_speech.checkpoints.s3prl_export import (
    export_s3prl,
)
from d2v_speech.nn.config import EncoderConfig


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


#: DST formats of `convert`; a DST ending in .pt/.pth/.ckpt defaults to native, others to hf
TARGETS = ("hf", "native", "fairseq", "s3prl")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m d2v_speech.checkpoints", description="Inspect or convert checkpoints."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = commands.add_parser("inspect", help="print what a checkpoint holds")
    _add_source_arguments(inspect_cmd)
    _add_common_options(inspect_cmd)
    convert_cmd = commands.add_parser(
        "convert",
        help="convert to an HF directory, or a native, fairseq or s3prl file; also writes its "
        "model card: DST/README.md for a directory, DST with the suffix .md beside a file",
    )
    _add_source_arguments(convert_cmd)
    convert_cmd.add_argument(
        "dst", help="directory (hf) or file (native, fairseq, s3prl: .pt); see --to"
    )
    convert_cmd.add_argument(
        "--to",
        choices=TARGETS,
        help="DST format (default: native for a DST ending in .pt/.pth/.ckpt, else hf); "
        "fairseq = a data2vec(-aqc) .pt with teacher and heads, s3prl = an s3prl "
        "data2vec_custom upstream checkpoint (SUPERB)",
    )
    _add_common_options(convert_cmd)
    return parser


def _write(checkpoint: LoadedCheckpoint, target: str, src: str, dst: str) -> None:
    """Export `checkpoint` (read from `src`) as `target` to `dst`."""
    if target == "native":
        save_native(checkpoint, dst)
    elif target == "fairseq":
        export_fairseq(checkpoint, dst, source=src)
    elif target == "s3prl":
        export_s3prl(checkpoint, dst, source=src)
    else:
        export_huggingface(checkpoint, dst)


def _write_card(checkpoint: LoadedCheckpoint, target: str, src: str, dst: str) -> Path:
    """The export's model card, with the run's training facts when `src` is one of our runs."""
    run = None
    if checkpoint.source_format == FORMAT_RECIPE:
        run = read_training_run(find_recipe_checkpoint(src))
    command = f"python -m d2v_speech.checkpoints convert {src} {dst} --to {target}"
    text = render_model_card(checkpoint, target, dst, source=src, run=run, command=command)
    return write_model_card(dst, text)


def _error_line(error: Exception, src: str, target: str | None) -> str:
    """One line naming the source file and the problem (plus a hint for an hf export)."""
    message = " ".join(str(error).split())
    if src not in message:
        message = f"{src}: {message}"
    if target == "hf" and isinstance(error, CheckpointError):
        message += " (a native file keeps everything: --to native, or a DST ending in .pt)"
    return f"error: {message}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m d2v_speech.checkpoints`; returns the exit status."""
    args = _build_parser().parse_args(argv)
    target = None
    try:
        config = EncoderConfig.from_yaml(args.config) if args.config else None
        checkpoint = load_checkpoint(args.src, config=config, allow_pickle=args.allow_pickle)
        if args.command == "inspect":
            print(describe(checkpoint))
            return 0
        target = args.to or ("native" if args.dst.endswith(_NATIVE_SUFFIXES) else "hf")
        _write(checkpoint, target, args.src, args.dst)
        card = _write_card(checkpoint, target, args.src, args.dst)
    except (CheckpointError, ValueError, OSError) as error:
        print(_error_line(error, args.src, target), file=sys.stderr)
        return 1
    print(f"wrote {args.dst} ({target})\nwrote {card} (its model card)")
    return 0
