"""The Brain every recipe's Brain derives from: SpeechBrain 1.1.2's command-line options made
to behave as users expect, unreadable audio files skipped and counted instead of ending the
run, and freed heap memory handed back to the OS as the run goes (`d2v_speech.heap`)."""

from __future__ import annotations

import time

import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger

from d2v_speech.heap import HeapReleaser, release_free_heap
from d2v_speech.nn.compiled import compile_transformer_layers

logger = get_logger(__name__)

DEFAULT_MAX_UNREADABLE_FILES = 100


class TooManyUnreadableFilesError(RuntimeError):
    """More audio files could not be read during a run than its YAML allows."""


CKPT_INTERVAL_OPTIONS = (
    ("ckpt_interval_steps", "ckpt_interval_minutes"),
    ("ckpt_interval_minutes", "ckpt_interval_steps"),
)


def keep_command_line_ckpt_interval(hparams: dict | None, run_opts) -> dict | None:
    """Hparams without the YAML's checkpoint interval when the command line sets the other one.

    SpeechBrain exits when both `ckpt_interval_minutes` and `ckpt_interval_steps` are positive,
    so `--ckpt_interval_steps=N` would otherwise clash with the YAML's `ckpt_interval_minutes`.
    """
    if hparams is None or run_opts is None:
        return hparams
    overridden = set(run_opts) if isinstance(run_opts, dict) else run_opts.overridden_args
    for chosen, other in CKPT_INTERVAL_OPTIONS:
        if chosen in overridden and other not in overridden and other in hparams:
            hparams = {**hparams, other: 0}
    return hparams


class RecipeBrain(sb.Brain):
    """sb.Brain where `--ckpt_interval_steps` / `--ckpt_interval_minutes` on the command line
    replace the YAML's other interval, `--optimizer_step_limit=N` is a number, and a batch's
    unreadable files (the collate functions' `unreadable` list) are logged by name with a
    running count; the run stops with a clear message only when the count passes the YAML's
    `max_unreadable_files` (default 100). Free heap pages go back to the OS every 20 batches
    and before each stage's loader forks its workers, and the YAML's `heap_mmap_threshold_mib`
    (default 0: glibc's own) can pin glibc's mmap threshold (`d2v_speech.heap`: a tiny
    fine-tuning run's RSS grew to 7 GB with its workers, most of it freed memory), or its
    `heap_keep_large_blocks: True` keep freed blocks in the heap (no page faults per step). With the
    YAML's `compile_transformer_layers: True` the Transformer layers are compiled by inductor
    (`d2v_speech.nn.compiled`; same results as eager, a few percent faster per step on a CPU)."""

    def __init__(
        self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None
    ):
        hparams = keep_command_line_ckpt_interval(hparams, run_opts)
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        # SpeechBrain 1.1.2 keeps `--optimizer_step_limit=N` from the command line as a string
        if isinstance(self.optimizer_step_limit, str):
            self.optimizer_step_limit = int(self.optimizer_step_limit)
        self.unreadable_files = 0
        self._compile_clock: float | None = None  # wall clock at compilation, until the 1st update
        # 0: glibc's own mmap threshold; > 0 bounds the RSS at a CPU cost; keeping freed blocks
        # in the heap spares a step the page faults of its largest activations (d2v_speech.heap)
        self.heap_releaser = HeapReleaser(
            mmap_threshold_mib=getattr(self.hparams, "heap_mmap_threshold_mib", 0),
            keep_large_blocks=getattr(self.hparams, "heap_keep_large_blocks", False),
        )

    def skip_unreadable(self, batch) -> bool:
        """Count and log the batch's unreadable files; True when no utterance is left in it."""
        messages = batch.get("unreadable", []) if isinstance(batch, dict) else []
        limit = getattr(self.hparams, "max_unreadable_files", DEFAULT_MAX_UNREADABLE_FILES)
        for message in messages:
            self.unreadable_files += 1
            logger.warning(
                "skipped unreadable audio (%d so far): %s", self.unreadable_files, message
            )
        if self.unreadable_files > limit:
            raise TooManyUnreadableFilesError(
                f"{self.unreadable_files} audio files could not be read in this run, more than "
                f"max_unreadable_files ({limit}); the last: {messages[-1]}. Check the data "
                "(python -m d2v_speech.corpora.librispeech decodes every file) or raise the limit."
            )
        return isinstance(batch, dict) and not batch.get("id", True)

    def fit_batch(self, batch):
        self.heap_releaser.tick()
        if self.skip_unreadable(batch):
            return torch.tensor(0.0)
        return super().fit_batch(batch)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if self._compile_clock is not None:
            start, self._compile_clock = self._compile_clock, None
            logger.info(
                "first update with compilation: %.0f s wall (inductor compiles in worker "
                "processes; its disk cache shortens this when the run resumes)",
                time.perf_counter() - start,
            )

    def evaluate_batch(self, batch, stage):
        self.heap_releaser.tick()
        if self.skip_unreadable(batch):
            return torch.tensor(0.0)
        return super().evaluate_batch(batch, stage)

    def on_fit_start(self):
        super().on_fit_start()
        if getattr(self.hparams, "compile_transformer_layers", False):
            # after the checkpoint is loaded (compiling changes no parameter or state-dict key)
            count = compile_transformer_layers(self.modules_to_compile())
            self._compile_clock = time.perf_counter()
            logger.info(
                "compile_transformer_layers: %d Transformer layers compiled by inductor; the "
                "first steps compile them (about a minute for the tiny model)",
                count,
            )

    def modules_to_compile(self) -> list[torch.nn.Module]:
        """Modules whose Transformer layers `compile_transformer_layers: True` compiles."""
        return list(self.modules.values())

    #: hparams objects with an `epoch` attribute that follows the training epoch (their random
    #: draws change per epoch yet replay exactly on resume)
    epoch_following_hparams: tuple[str, ...] = ()

    def on_stage_start(self, stage, epoch=None):
        # the loader's workers fork from this heap: free chunks they would reuse are copied
        release_free_heap()
        if stage == sb.Stage.TRAIN and epoch is not None:
            # set before the loader forks its workers, so they see this epoch's value
            for name in self.epoch_following_hparams:
                stateful = getattr(self.hparams, name, None)
                if stateful is not None:
                    stateful.epoch = epoch
