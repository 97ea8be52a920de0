"""The Brain every recipe's Brain derives from: SpeechBrain 1.1.2's command-line options made
to behave as users expect."""

from __future__ import annotations

import speechbrain as sb

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
    replace the YAML's other interval, and `--optimizer_step_limit=N` is a number."""

    def __init__(
        self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None
    ):
        hparams = keep_command_line_ckpt_interval(hparams, run_opts)
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        # SpeechBrain 1.1.2 keeps `--optimizer_step_limit=N` from the command line as a string
        if isinstance(self.optimizer_step_limit, str):
            self.optimizer_step_limit = int(self.optimizer_step_limit)

    #: hparams objects with an `epoch` attribute that follows the training epoch (their random
    #: draws change per epoch yet replay exactly on resume)
    epoch_following_hparams: tuple[str, ...] = ()

    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TRAIN and epoch is not None:
            # set before the loader forks its workers, so they see this epoch's value
            for name in self.epoch_following_hparams:
                stateful = getattr(self.hparams, name, None)
                if stateful is not None:
                    stateful.epoch = epoch
