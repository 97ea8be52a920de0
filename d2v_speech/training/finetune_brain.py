"""The SpeechBrain Brain that fine-tunes a data2vec encoder with CTC.

Modules: `encoder` (`MaskedEncoder`) and `head` (`CTCHead`) of the `CTCModel` given as
hparams `model`. While `model.transformer_frozen(optimizer_step)`, the encoder runs under
no_grad (fairseq `freeze_finetune_updates`); the CNN is always frozen. Because the two are
separate modules, DDP never waits for gradients of a frozen encoder.

What it logs (JSON lines in `step_log_file`, curves in `curves_png`):

- every `log_interval` updates: train CTC loss per utterance and per character (nats/char),
  learning rate, whether the encoder is frozen, audio seconds processed per second;
- at update 1 and every `dev_loss_interval` updates: held-out CTC nats/char, CER and WER on a
  fixed small dev subset. It moves long before WER does; a value stuck near 2.9 nats/char is
  the blank / letter-unigram plateau;
- every validation: dev WER, CER and nats/char. The checkpoint with the lowest dev WER is kept
  (with the most recent one, for resuming).
"""

from __future__ import annotations

import time
from typing import Any

import speechbrain as sb
import torch
from speechbrain.nnet.schedulers import TriStageLRSchedule
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.ctc_model import ctc_forward, ctc_loss_per_utterance
from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.evaluation import decode_dataset
from d2v_speech.asr.scoring import score
from d2v_speech.data.pipelines import SAMPLE_RATE
from d2v_speech.training.recipe_brain import RecipeBrain
from d2v_speech.training.step_log import JsonLinesLog, plot_training_curves

logger = get_logger(__name__)

__all__ = ["FineTuneBrain", "tri_stage_schedule"]


#: dev statistics a checkpoint can be selected by (lowest wins)
CHECKPOINT_METRICS = ("WER", "CER", "nats_per_char")


def best_checkpoint_metric(hparams: Any) -> str:
    """The dev metric whose lowest value picks the checkpoint to keep and score.

    WER is the fork's choice. Short runs whose WER (or CER) stays near 100 % use the held-out
    loss per character, which moves first: there WER differences are noise and pick an early
    checkpoint.
    """
    values = hparams if isinstance(hparams, dict) else vars(hparams)
    metric = values.get("best_checkpoint_metric", "WER")
    if metric not in CHECKPOINT_METRICS:
        raise ValueError(
            f"best_checkpoint_metric must be one of {CHECKPOINT_METRICS}, got {metric!r}"
        )
    return metric


def tri_stage_schedule(
    lr: float,
    total_updates: int,
    phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5),
    init_lr_scale: float = 0.01,
    final_lr_scale: float = 0.05,
) -> TriStageLRSchedule:
    """fairseq `tri_stage` from phase ratios: warm-up, hold, exponential decay over the run."""
    if total_updates < 1:
        raise ValueError(f"total_updates must be >= 1, got {total_updates}")
    if len(phase_ratio) != 3 or abs(sum(phase_ratio) - 1.0) > 1e-6:
        raise ValueError(f"phase_ratio must be three fractions summing to 1, got {phase_ratio}")
    warmup, hold, decay = (int(ratio * total_updates) for ratio in phase_ratio)
    return TriStageLRSchedule(
        lr=lr,
        warmup_steps=max(1, warmup),
        hold_steps=hold,
        decay_steps=max(1, decay),
        total_steps=total_updates,
        init_lr_scale=init_lr_scale,
        final_lr_scale=final_lr_scale,
    )


class FineTuneBrain(RecipeBrain):
    """CTC fine-tuning (see module docstring).

    Expected hparams: `model` (CTCModel), `lr_scheduler` (called as `(optimizer, updates)`),
    `log_interval`, `dev_loss_interval`, `dev_loss_batch_size`, `step_log_file`, `curves_png`,
    `train_logger` (FileTrainLogger). `dev_loss_set` is the fixed dev subset (or None).
    """

    epoch_following_hparams = ("train_augmenter",)

    def __init__(self, *args: Any, dev_loss_set: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dev_loss_set = dev_loss_set

    @property
    def ctc_model(self):
        return self.hparams.model

    def on_fit_start(self):
        super().on_fit_start()
        self.step_log = JsonLinesLog(self.hparams.step_log_file)
        # a resumed run redoes the updates after its checkpoint: their old records go
        self.step_log.truncate_after(self.optimizer_step)
        self._reset_interval()
        # the schedule is a pure function of the update count, so a resumed run continues it
        self.hparams.lr_scheduler(self.optimizer, self.optimizer_step)

    def _reset_interval(self):
        self._interval = {"loss": 0.0, "utterances": 0, "chars": 0, "audio": 0.0}
        self._interval_start = time.time()

    # ----------------------------------------------------------------- forward
    def compute_forward(self, batch, stage):
        frozen = stage == sb.Stage.TRAIN and self.ctc_model.transformer_frozen(self.optimizer_step)
        return ctc_forward(
            self.modules.encoder,
            self.modules.head,
            batch["sig"].to(self.device),
            batch["lengths"].to(self.device),
            transformer_frozen=frozen,
        )

    def compute_objectives(self, predictions, batch, stage):
        losses = ctc_loss_per_utterance(
            predictions.log_probs,
            predictions.frame_lengths,
            batch["tokens"].to(self.device),
            batch["token_lengths"].to(self.device),
            self.ctc_model.vocabulary.blank_index,
        )
        totals = self._interval if stage == sb.Stage.TRAIN else self._valid
        totals["loss"] += float(losses.detach().sum())
        totals["utterances"] += len(losses)
        totals["chars"] += int(batch["chars"].sum())
        if stage == sb.Stage.TRAIN:
            self._interval["audio"] += float(batch["lengths"].sum()) / SAMPLE_RATE
        else:
            decoder = GreedyDecoder(self.ctc_model.vocabulary)
            self._valid["references"] += batch["text"]
            self._valid["hypotheses"] += decoder(predictions.log_probs, predictions.frame_lengths)
        # fairseq sentence_avg: loss summed over frames and labels, averaged over utterances
        return losses.sum() / len(losses)

    # ------------------------------------------------------------ optimisation
    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if not should_step:
            return
        self.hparams.lr_scheduler(self.optimizer, self.optimizer_step)
        if self.optimizer_step % self.hparams.log_interval == 0:
            self._write_train_log()
        interval = self.hparams.dev_loss_interval
        if self.optimizer_step == 1 or (interval > 0 and self.optimizer_step % interval == 0):
            self._write_dev_loss()

    def _write_train_log(self):
        totals = self._interval
        elapsed = max(time.time() - self._interval_start, 1e-9)
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        record = {
            "update": self.optimizer_step,
            "time": time.time(),
            "train_loss": totals["loss"] / max(totals["utterances"], 1),
            "train_nats_per_char": totals["loss"] / max(totals["chars"], 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            # the update just made ran with the state of the count before it
            "transformer_frozen": int(self.ctc_model.transformer_frozen(self.optimizer_step - 1)),
            "audio_sec_per_sec": totals["audio"] * world / elapsed,
        }
        self.step_log.write(record)
        if if_main_process():
            shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("time",))
            logger.info(shown)
        self._reset_interval()

    def _write_dev_loss(self):
        """Held-out nats/char on the fixed dev subset (main process only; no collectives)."""
        if self.dev_loss_set is None or not if_main_process():
            return
        outputs = decode_dataset(
            self.ctc_model,
            self.dev_loss_set,
            GreedyDecoder(self.ctc_model.vocabulary),
            self.device,
            self.hparams.dev_loss_batch_size,
            progress=False,
        )
        rates = score(outputs.references, outputs.hypotheses)
        record = {
            "update": self.optimizer_step,
            "dev_subset_nats_per_char": outputs.nats_per_char,
            "dev_subset_cer": rates.cer,
            "dev_subset_wer": rates.wer,
        }
        self.step_log.write(record)
        logger.info(
            "update %d: dev subset %.4f nats/char, CER %.2f, WER %.2f",
            self.optimizer_step,
            outputs.nats_per_char,
            rates.cer,
            rates.wer,
        )

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        super().on_stage_start(stage, epoch)
        if stage != sb.Stage.TRAIN:
            self._valid = {"loss": 0.0, "utterances": 0, "chars": 0}
            self._valid["references"], self._valid["hypotheses"] = [], []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        rates = score(self._valid["references"], self._valid["hypotheses"])
        stats = {
            "loss": stage_loss,
            "nats_per_char": self._valid["loss"] / max(self._valid["chars"], 1),
            "WER": rates.wer,
            "CER": rates.cer,
        }
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "updates": self.optimizer_step},
                train_stats={"loss": self.train_loss},
                valid_stats=stats,
            )
            self.step_log.write(
                {"update": self.optimizer_step, "epoch": epoch}
                | {f"valid_{k}": v for k, v in stats.items()}
            )
            self.checkpointer.save_and_keep_only(
                meta={**stats, "updates": self.optimizer_step},
                min_keys=[best_checkpoint_metric(self.hparams)],
                num_to_keep=1,
                keep_recent=True,
            )
            if if_main_process():
                plot_training_curves(self.step_log.read(), self.hparams.curves_png)
