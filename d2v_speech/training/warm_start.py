"""Warm start: continue pretraining from released or earlier weights, e.g. on new audio.

`warm_start_objective` copies weights into a freshly built `Data2VecObjective` / `AQCObjective`
from anything `d2v_speech.checkpoints.load_checkpoint` reads: an official fairseq data2vec or
data2vec-aqc `.pt`, a Hugging Face `Data2VecAudio` directory, a native file, or one of our own
recipe checkpoints (a `CKPT+*` folder or an output folder).

It only runs before a recipe has a checkpoint of its own (`should_warm_start`): once one exists,
the recipe resumes that checkpoint, which already holds the warm-started weights.

What continued pretraining starts afresh, and what it may keep
---------------------------------------------------------------
optimizer, lr_schedule
    Always fresh. Warm start touches weights only: the optimizer is built afterwards, the Brain's
    update counter starts at 0, so Adam moments and the tri-stage schedule (warm-up included)
    start over. A warm-up protects the loaded weights from the first large steps.
teacher
    "from_checkpoint" (default): the source's EMA teacher (fairseq `_ema`, our teacher), else a
    copy of the student when the source has none (HF, fine-tuned files). "copy_student": always
    a copy of the loaded student, as at the start of a run.
ema_schedule (name in `reset` to restart)
    Kept: the EMA decay continues from the source's update count (usually the end decay,
    0.9999 in BASE). Restarted: the decay anneals again from `ema_decay`, so the teacher follows
    the student more closely while it adapts to the new audio.
quantizer_temperature (name in `reset` to restart)
    Kept: the Gumbel temperature continues from the source's update count (0.5 after 277k
    BASE updates). Restarted: it starts again at the start temperature (2.0), which reshuffles
    the code choices of a trained codebook. Keeping it needs the Brain to pass
    `optimizer_step + quantizer_update_offset(...)` to `after_optimizer_step`, because the
    objective sets the temperature from the update count it is given.

Either schedule restarts anyway when the source does not record its update count (HF
directories, fine-tuned files) or when the quantizer was not loaded; the report says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger
from torch import nn

from d2v_speech.checkpoints import (
    HEAD_NAMES,
    OPTIONAL_ENCODER_KEYS,
    CheckpointError,
    LoadedCheckpoint,
    check_state_dict,
    complete_checkpoint_folders,
    load_checkpoint,
)
from d2v_speech.nn.config import EncoderConfig

logger = get_logger(__name__)

__all__ = [
    "RESETTABLE",
    "TEACHER_CHOICES",
    "quantizer_update_offset",
    "should_warm_start",
    "warm_start_objective",
    "warm_start_unless_resuming",
]

ALWAYS_RESET = ("optimizer", "lr_schedule")
RESETTABLE = ALWAYS_RESET + ("ema_schedule", "quantizer_temperature")
TEACHER_CHOICES = ("from_checkpoint", "copy_student")
#: EncoderConfig fields that change the computation; dropouts and padding handling may differ
ARCHITECTURE_FIELDS = (
    "conv_layers",
    "conv_bias",
    "extractor_mode",
    "embed_dim",
    "num_layers",
    "num_heads",
    "ffn_dim",
    "pos_conv_depth",
    "pos_conv_kernel",
    "pos_conv_groups",
    "layer_norm_first",
    "alibi",
)
_EXTRA_STATE = "_extra_state"


def should_warm_start(checkpointer: Any) -> bool:
    """True when the checkpointer's folder holds no complete `CKPT+*` checkpoint yet.

    `checkpointer` is a SpeechBrain `Checkpointer` (its `checkpoints_dir` is read) or a folder.
    Folders without `CKPT.yaml` (an interrupted save) do not count.
    """
    folder = getattr(checkpointer, "checkpoints_dir", checkpointer)
    if not isinstance(folder, str | Path):
        raise ValueError(
            f"should_warm_start needs a Checkpointer or a folder, got {type(checkpointer).__name__}"
        )
    return not complete_checkpoint_folders(folder)


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def quantizer_update_offset(objective: nn.Module, optimizer_step: int) -> int:
    """Updates to add to the Brain's count before `after_optimizer_step` (call after recovery).

    It is the quantizer's count minus the Brain's: 0 for a fresh or restarted schedule, the
    source's count after a warm start that kept it, and the same value again after a resume
    (both counts come back from the same checkpoint). An fp16-overflow step that skipped the
    objective's update may leave it a few updates short; it never goes below 0.
    """
    quantizer = getattr(_unwrap(objective), "quantizer", None)
    if quantizer is None:
        return 0
    return max(0, int(quantizer.num_updates) - int(optimizer_step))


def _check_options(reset: Iterable[str], teacher: str) -> set[str]:
    if isinstance(reset, str):
        raise ValueError(f"reset must be a list of names, not the string {reset!r}")
    names = set(reset)
    unknown = sorted(names - set(RESETTABLE))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; valid: {list(RESETTABLE)}")
    if teacher not in TEACHER_CHOICES:
        raise ValueError(f"teacher must be one of {TEACHER_CHOICES}, got {teacher!r}")
    return names | set(ALWAYS_RESET)


def check_architecture(source: EncoderConfig, target: EncoderConfig) -> None:
    """Raise `CheckpointError` naming every architecture field where the two configs differ."""
    differences = [
        f"{name}: checkpoint {getattr(source, name)!r} vs objective {getattr(target, name)!r}"
        for name in ARCHITECTURE_FIELDS
        if getattr(source, name) != getattr(target, name)
    ]
    if differences:
        raise CheckpointError(
            "the checkpoint's encoder architecture differs from the objective's: "
            + "; ".join(differences)
        )


def _shapes(module: nn.Module) -> dict[str, Any]:
    return {k: v.shape for k, v in module.state_dict().items() if k != _EXTRA_STATE}


def _load_encoder(objective: nn.Module, checkpoint: LoadedCheckpoint) -> list[str]:
    """Student weights; returns the optional keys the source lacks (left at their init)."""
    model = objective.model
    check_architecture(checkpoint.config, model.config)
    check_state_dict(checkpoint.encoder_state, _shapes(model), "encoder", OPTIONAL_ENCODER_KEYS)
    model.load_state_dict(checkpoint.encoder_state, strict=False)
    return sorted(set(_shapes(model)) - set(checkpoint.encoder_state))


def _load_heads(
    objective: nn.Module, checkpoint: LoadedCheckpoint, load_heads: bool, strict_shapes: bool
) -> dict[str, Any]:
    """Pretraining heads present in both the source and the objective."""
    outcome: dict[str, Any] = {"loaded": [], "fresh": [], "skipped": {}, "unused": []}
    for name in HEAD_NAMES:
        module = getattr(objective, name, None)
        source = checkpoint.heads.get(name) if load_heads else None
        if not isinstance(module, nn.Module):
            if source is not None:
                outcome["unused"].append(name)
            continue
        if source is None:
            outcome["fresh"].append(name)
            continue
        tensors = {k: v for k, v in source.items() if k != _EXTRA_STATE}
        try:
            check_state_dict(tensors, _shapes(module), name)
        except CheckpointError as error:
            if strict_shapes:
                raise
            outcome["skipped"][name] = str(error)
            outcome["fresh"].append(name)
            continue
        # strict=False only because a fairseq quantizer has no _extra_state; it is set below
        module.load_state_dict(tensors, strict=False)
        outcome["loaded"].append(name)
    return outcome


def _set_teacher(objective: nn.Module, checkpoint: LoadedCheckpoint, choice: str) -> str:
    teacher = objective.teacher
    if choice == "from_checkpoint" and checkpoint.teacher_state is not None:
        check_state_dict(checkpoint.teacher_state, _shapes(teacher.model), "teacher")
        teacher.model.load_state_dict(checkpoint.teacher_state)
        return "checkpoint_ema"
    objective.reset_teacher()
    return "copy_of_student"


def _schedule_start(keep: bool, count: int | None) -> tuple[int, str]:
    if not keep:
        return 0, "restarted"
    if count is None:
        return 0, "restarted (the source records no update count)"
    return int(count), "kept"


def _quantizer_start(checkpoint: LoadedCheckpoint, keep: bool, loaded: bool) -> tuple[int, str]:
    """Update count to set on the quantizer: its own saved count (ours), else the source's."""
    if keep and not loaded:
        return 0, "restarted (the quantizer was not loaded)"
    extra = checkpoint.heads.get("quantizer", {}).get(_EXTRA_STATE) or {}
    return _schedule_start(keep, extra.get("num_updates", checkpoint.num_updates))


def _unwrap_objective(objective: nn.Module) -> nn.Module:
    """The objective inside a DDP wrapper, checked to have what a warm start sets."""
    objective = _unwrap(objective)
    for attribute in ("model", "teacher", "reset_teacher"):
        if not hasattr(objective, attribute):
            raise ValueError(
                f"{type(objective).__name__} has no {attribute!r}; expected a Data2VecObjective"
            )
    return objective


def _start_quantizer(
    objective: nn.Module, checkpoint: LoadedCheckpoint, continue_schedule: bool, loaded: bool
) -> dict[str, Any]:
    """Set the objective's quantizer (if any) to its temperature schedule's start; its report."""
    quantizer = getattr(objective, "quantizer", None)
    if not isinstance(quantizer, nn.Module):
        return {}
    updates, schedule = _quantizer_start(checkpoint, continue_schedule, loaded)
    quantizer.set_num_updates(updates)
    return {
        "quantizer_updates": updates,
        "quantizer_schedule": schedule,
        "quantizer_temperature": quantizer.temperature,
    }


def warm_start_objective(
    objective: nn.Module,
    source: str | Path | LoadedCheckpoint,
    reset: Iterable[str] = ("optimizer",),
    teacher: str = "from_checkpoint",
    load_heads: bool = True,
    strict_shapes: bool = True,
    config: EncoderConfig | None = None,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint's weights into `objective` before training starts.

    Arguments
    ---------
    objective : nn.Module
        A `Data2VecObjective` or `AQCObjective` (or a DDP wrapper of one), freshly built.
    source : path or LoadedCheckpoint
        Anything `load_checkpoint` reads (fairseq .pt, HF directory, native file, our CKPT+*
        folder or output folder), or an already loaded checkpoint.
    reset : iterable of str
        Schedules to restart, from `RESETTABLE`; "optimizer" and "lr_schedule" always restart.
        Not listed: "ema_schedule" and "quantizer_temperature" continue from the source's count.
    teacher : str
        "from_checkpoint" (the source's EMA teacher, else a student copy) or "copy_student".
    load_heads : bool
        Load `final_proj`, `quantizer`, `project_q`, `contr_proj` where both sides have them.
    strict_shapes : bool
        True: a head whose shapes differ raises. False: it keeps its fresh init (reported). The
        encoder (and teacher) must always match.
    config : EncoderConfig, optional
        Architecture of a source that carries none (raw state dict, a recipe checkpoint without
        hyperparams.yaml).
    allow_pickle : bool
        Fully unpickle trusted files that `torch.load(weights_only=True)` rejects.

    Returns
    -------
    dict
        What was loaded and reset (see the keys); also logged on the main process.
    """
    restarted = _check_options(reset, teacher)
    objective = _unwrap_objective(objective)
    checkpoint = (
        source
        if isinstance(source, LoadedCheckpoint)
        else load_checkpoint(source, config=config, allow_pickle=allow_pickle)
    )
    not_in_source = _load_encoder(objective, checkpoint)
    heads = _load_heads(objective, checkpoint, load_heads, strict_shapes)
    teacher_source = _set_teacher(objective, checkpoint, teacher)
    ema_updates, ema_schedule = _schedule_start(
        "ema_schedule" not in restarted, checkpoint.num_updates
    )
    objective.teacher.num_updates = ema_updates
    keep_temperature = "quantizer_temperature" not in restarted
    quantizer_report = _start_quantizer(
        objective, checkpoint, keep_temperature, "quantizer" in heads["loaded"]
    )
    report = {
        "source": "LoadedCheckpoint" if isinstance(source, LoadedCheckpoint) else str(source),
        "source_format": checkpoint.source_format,
        "source_updates": checkpoint.num_updates,
        "source_normalize": checkpoint.normalize,
        "encoder_tensors": len(checkpoint.encoder_state),
        "encoder_not_in_source": not_in_source,
        "teacher": teacher_source,
        "ema_updates": ema_updates,
        "ema_schedule": ema_schedule,
        "ema_decay": objective.teacher.decay,
        "heads_loaded": heads["loaded"],
        "heads_fresh": heads["fresh"],
        "heads_skipped": heads["skipped"],
        "heads_unused": heads["unused"],
        **quantizer_report,
        "reset": sorted(restarted),
    }
    if if_main_process():
        logger.info("warm start: %s", report)
    return report


def warm_start_unless_resuming(
    objective: nn.Module,
    checkpointer: Any,
    init_from: str | Path | None,
    *,
    reset: Iterable[str] = ("optimizer",),
    teacher: str = "from_checkpoint",
    load_heads: bool = True,
    strict_shapes: bool = True,
    pipeline_normalize: bool | None = None,
) -> dict[str, Any] | None:
    """Recipe hook: warm start `objective` from `init_from` if it is set and `checkpointer` has
    no checkpoint of its own yet; returns the report (`warm_start_objective`), or None.

    Call it on every DDP rank after creating the Brain and before `fit` (every rank must hold
    the same weights before DDP wraps the module).

    Arguments
    ---------
    objective : nn.Module
        The pretraining objective (or its DDP wrapper).
    checkpointer : Checkpointer or folder
        The run's checkpointer; once it holds a checkpoint, the run resumes that instead.
    init_from : path, optional
        What to load (YAML `init_from`); None or empty: no warm start.
    reset, teacher, load_heads, strict_shapes
        As in `warm_start_objective` (YAML `init_reset`, `init_teacher`, `init_load_heads`,
        `init_strict_shapes`).
    pipeline_normalize : bool, optional
        Whether the training audio pipeline normalises waveforms; a warning is logged when the
        source was trained the other way. None: not checked.
    """
    if not init_from:
        return None
    if not should_warm_start(checkpointer):
        if if_main_process():
            logger.info("init_from=%s ignored: resuming the run's own checkpoint", init_from)
        return None
    report = warm_start_objective(
        objective,
        init_from,
        reset=reset,
        teacher=teacher,
        load_heads=load_heads,
        strict_shapes=strict_shapes,
    )
    expected = report["source_normalize"]
    if (
        expected is not None
        and pipeline_normalize is not None
        and bool(pipeline_normalize) != expected
    ):
        logger.warning(
            "init_from was trained with normalize=%s but train_audio_pipeline.normalize=%s",
            expected,
            pipeline_normalize,
        )
    return report
