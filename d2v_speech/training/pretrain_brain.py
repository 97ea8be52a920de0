"""The SpeechBrain Brain that pretrains with any objective of `d2v_speech.ssl`.

An objective is a module called as `objective(wav, sample_lengths, **views)` that returns a dict
with a scalar `loss` plus named statistics, and has `after_optimizer_step(num_updates)` (EMA
teacher, quantizer temperature). The Brain adds what every run needs: skipping non-finite
updates on all ranks together, LayerDrop decisions shared by all DDP ranks, random streams
that depend only on the update count (exact resume), the tri-stage learning rate, interval
logging to text + JSON lines, curves, and collapse monitors.
"""

from __future__ import annotations

import time

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.distributed import ddp_all_reduce, if_main_process
from speechbrain.utils.logger import get_logger

from d2v_speech.data.pipelines import SAMPLE_RATE
from d2v_speech.training.recipe_brain import RecipeBrain
from d2v_speech.training.step_log import IntervalAverager, JsonLinesLog, plot_training_curves
from d2v_speech.training.warm_start import quantizer_update_offset

logger = get_logger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses."""


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(module, "module", module)


def shared_layer_keep(
    num_layers: int, layerdrop: float, seed: int, update: int, micro_step: int
) -> torch.Tensor | None:
    """LayerDrop decisions (L,) bool drawn from (seed, update, micro-step) only.

    Every DDP rank computes the same decisions, so no rank waits for gradients another rank
    skipped and DistributedDataParallel needs no `find_unused_parameters`.
    """
    if layerdrop <= 0:
        return None
    generator = torch.Generator().manual_seed(seed * 1_000_003 + update * 7_919 + micro_step)
    return torch.rand(num_layers, generator=generator) >= layerdrop


def seed_step_generators(seed: int, rank: int, update: int, micro_step: int) -> None:
    """Seed torch's global generators (CPU and CUDA) from (seed, rank, update, micro-step).

    Masks, negatives, k-means seeds and dropout of a training step then depend only on the step,
    not on what consumed random numbers before it. A resumed run needs this: re-creating the
    data-loader iterator after recovery draws from the global generator, which would otherwise
    shift every later draw. The rank keeps DDP ranks' draws different. fairseq's trainer seeds
    every step from (seed, update) for the same reason.
    """
    entropy = [seed, rank, update, micro_step]
    torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]))


class PretrainBrain(RecipeBrain):
    """Brain for self-supervised pretraining (see module docstring).

    Expected hparams: `seed`, `lr_scheduler` (called as `scheduler(optimizer, num_updates)`),
    `log_interval` (updates), `max_nonfinite_in_row`, `step_log_file` (JSON lines),
    `curves_png` (null: no plot), `train_logger` (FileTrainLogger), optional `collapse_monitor`
    with `check(update, stats)`.
    """

    epoch_following_hparams = ("train_audio_pipeline", "train_collate")

    def fit(self, epoch_counter, *args, **kwargs):
        self._epoch_counter = epoch_counter
        return super().fit(epoch_counter, *args, **kwargs)

    def on_fit_start(self):
        super().on_fit_start()
        self._stop_if_finished()
        # after a warm start the quantizer continues the released checkpoint's temperature schedule
        self.update_offset = quantizer_update_offset(
            unwrap(self.modules.objective), self.optimizer_step
        )
        self.averager = IntervalAverager()
        self.step_log = JsonLinesLog(self.hparams.step_log_file)
        # a resumed run redoes the updates after its checkpoint: their old records go
        self.step_log.truncate_after(self.optimizer_step)
        self.nonfinite_in_row = 0
        self.skipped_updates = getattr(self, "skipped_updates", 0)
        self._interval_start = time.time()
        self._interval_audio_seconds = 0.0
        self._log_effective_batch()
        # the schedule is a pure function of the update count, so a resumed run continues it exactly
        self.hparams.lr_scheduler(self.optimizer, self.optimizer_step)

    def modules_to_compile(self):
        # the EMA teacher's copy of the encoder runs every step too
        return [*super().modules_to_compile(), unwrap(self.modules.objective).teacher.model]

    def _stop_if_finished(self):
        """End `fit` before its first epoch when the recovered run already ended.

        A run ended when it reached `optimizer_step_limit` and saved its end-of-epoch checkpoint
        (`step` 0). Without this, re-running the command adds an epoch: it reads a batch,
        validates again and saves a checkpoint with an advanced epoch counter.
        """
        limit = self.optimizer_step_limit
        finished = limit is not None and self.optimizer_step >= limit and self.step == 0
        counter = getattr(self, "_epoch_counter", None)
        if finished and hasattr(counter, "limit") and hasattr(counter, "current"):
            logger.info(
                "the recovered run already made its %d updates (optimizer_step_limit); "
                "nothing left to train",
                self.optimizer_step,
            )
            counter.limit = counter.current

    def _log_effective_batch(self):
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        per_device = getattr(self.hparams, "max_batch_seconds", None)
        if per_device is not None and if_main_process():
            logger.info(
                "effective batch: %.1f s of audio per update "
                "(%.1f s per device x %d devices x %d accumulation)",
                per_device * world * self.grad_accumulation_factor,
                per_device,
                world,
                self.grad_accumulation_factor,
            )

    # ----------------------------------------------------------------- forward
    def compute_forward(self, batch, stage):
        wav = batch["sig"].to(self.device)
        lengths = batch["lengths"].to(self.device)
        views = {}
        if "sig_aug" in batch:
            views["wav_aug"] = batch["sig_aug"].to(self.device)
        if "mask" in batch:
            # masks precomputed by the data pipeline (data2vec 2.0's clone masks)
            views["mask"] = batch["mask"].to(self.device)
        objective = unwrap(self.modules.objective)
        layer_keep = None
        if stage == sb.Stage.TRAIN:
            config = objective.model.config
            layer_keep = shared_layer_keep(
                config.num_layers,
                config.layerdrop,
                self.hparams.seed,
                self.optimizer_step,
                self.step,
            )
        outputs = self.modules.objective(wav, lengths, layer_keep=layer_keep, **views)
        outputs["audio_seconds"] = float(lengths.sum()) / SAMPLE_RATE
        return outputs

    def compute_objectives(self, predictions, batch, stage):
        if stage != sb.Stage.TRAIN:
            self.valid_averager.add(_scalars(predictions))
        return predictions["loss"]

    # ------------------------------------------------------------ optimisation
    def fit_batch(self, batch):
        self.heap_releaser.tick()
        if self.skip_unreadable(batch):
            return torch.tensor(0.0)
        should_step = (self.step % self.grad_accumulation_factor) == 0
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        seed_step_generators(self.hparams.seed, rank, self.optimizer_step, self.step)
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            finite = self._finite_on_all_ranks(loss)
            if finite:
                self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if not finite:
            self._skip_nonfinite_update(loss)
            return loss.detach().cpu()
        if should_step:
            scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
            self.optimizers_step()
            # an fp16 overflow makes GradScaler skip the step and lower its scale
            overflowed = scale_before is not None and self.scaler.get_scale() < scale_before
            if overflowed:
                self.skipped_updates += 1
            else:
                self.nonfinite_in_row = 0
                unwrap(self.modules.objective).after_optimizer_step(
                    self.optimizer_step + self.update_offset
                )
            self.hparams.lr_scheduler(self.optimizer, self.optimizer_step)
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def _finite_on_all_ranks(self, loss: torch.Tensor) -> bool:
        flag = torch.tensor(float(torch.isfinite(loss.detach()).all()), device=self.device)
        if torch.distributed.is_initialized():
            flag = ddp_all_reduce(flag, torch.distributed.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def _skip_nonfinite_update(self, loss):
        self.nonfinite_in_row += 1
        self.skipped_updates += 1
        self.zero_grad(set_to_none=True)
        limit = self.hparams.max_nonfinite_in_row
        logger.warning(
            "non-finite loss (%s) at update %d: optimiser and EMA step skipped "
            "(%d in a row, limit %d)",
            float(loss.detach()),
            self.optimizer_step,
            self.nonfinite_in_row,
            limit,
        )
        if self.nonfinite_in_row >= limit:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_row} non-finite losses in a row at update "
                f"{self.optimizer_step}. "
                "Try a lower learning rate, bf16 or fp32 instead of fp16, or a larger warm-up; "
                "resume from the last checkpoint after changing the YAML."
            )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        self.averager.add(_scalars(outputs))
        self._interval_audio_seconds += outputs["audio_seconds"]
        if should_step and self.optimizer_step % self.hparams.log_interval == 0:
            self._write_interval_log()

    def _write_interval_log(self):
        stats = self.averager.pop_means()
        elapsed = max(time.time() - self._interval_start, 1e-9)
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        stats.pop("audio_seconds", None)
        stats["audio_sec_per_sec"] = self._interval_audio_seconds * world / elapsed
        stats["lr"] = self.optimizer.param_groups[0]["lr"]
        stats["skipped_updates"] = self.skipped_updates
        self._interval_start = time.time()
        self._interval_audio_seconds = 0.0
        record = {"update": self.optimizer_step, "time": time.time(), **stats}
        self.step_log.write(record)
        monitor = getattr(self.hparams, "collapse_monitor", None)
        if monitor is not None:
            monitor.check(self.optimizer_step, stats)
        if if_main_process():
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(stats.items()))
            logger.info("update %d: %s", self.optimizer_step, shown)

    # ------------------------------------------------------------------ stages
    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        batch_sampler = getattr(loader, "batch_sampler", None)
        if (
            stage == sb.Stage.TRAIN
            and self.train_sampler is None
            and hasattr(batch_sampler, "set_epoch")
        ):
            # SpeechBrain calls set_epoch only on the samplers it wraps itself (shuffle, DDP).
            # Without it a DynamicBatchSampler keeps its epoch-0 batches, only re-permuted after
            # each epoch, so a run resumed from an end-of-epoch checkpoint would see other batches.
            self.train_sampler = batch_sampler
        return loader

    def on_stage_start(self, stage, epoch=None):
        super().on_stage_start(stage, epoch)
        self.valid_averager = IntervalAverager()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        valid_stats = {"loss": stage_loss, **self.valid_averager.pop_means()}
        valid_stats.pop("audio_seconds", None)
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "updates": self.optimizer_step},
                train_stats={"loss": self.train_loss},
                valid_stats=valid_stats,
            )
            self.step_log.write(
                {"update": self.optimizer_step, "epoch": epoch}
                | {f"valid_{k}": v for k, v in valid_stats.items()}
            )
            self.checkpointer.save_and_keep_only(
                meta={"valid_loss": stage_loss, "updates": self.optimizer_step},
                num_to_keep=2,
                keep_recent=True,
            )
            if if_main_process() and self.hparams.curves_png:
                plot_training_curves(self.step_log.read(), self.hparams.curves_png)


def _scalars(outputs: dict) -> dict:
    """Scalar statistics of an objective's outputs (per-utterance vectors are not logged)."""
    return {
        k: v
        for k, v in outputs.items()
        if k != "per_utterance_loss"
        and ((isinstance(v, torch.Tensor) and v.numel() == 1) or isinstance(v, (int, float)))
    }


def _fmt(value: float) -> str:
    return f"{value:.4g}"
