"""The body shared by the fine-tuning recipes (LibriSpeech, Switchboard): build, train, score.

A recipe parses its arguments, prepares its CSVs, then calls `finetune_and_score`, which builds
the CTC model, trains it with `FineTuneBrain` (resuming from the last checkpoint), restores the
checkpoint with the lowest dev WER and scores the test sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from speechbrain.utils.distributed import if_main_process

from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.evaluation import evaluate_sets
from d2v_speech.training.finetune_brain import FineTuneBrain, best_checkpoint_metric
from d2v_speech.training.finetune_setup import (
    build_test_sets,
    build_training_sets,
    build_vocabulary,
)

__all__ = ["finetune_and_score"]


def finetune_and_score(
    hparams: dict[str, Any],
    run_opts: Any,
    run_info: Mapping[str, Any],
    score_normalizer: Callable[[str], str] | None = None,
) -> dict | None:
    """Fine-tune `hparams["ctc_model"]`, then score; returns {set: ErrorRates} on the main process.

    `run_info` (train split, subset, ...) is saved inside the model and in the result files.
    `run_opts` must be SpeechBrain's own `RunOptions` from `parse_arguments`: as a plain dict
    its unset options (None) would override the YAML's (e.g. `optimizer_step_limit`).
    """
    model = hparams["ctc_model"](vocabulary=build_vocabulary(hparams), info=dict(run_info))
    hparams["model"] = model
    hparams["checkpointer"].add_recoverable("model", model)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    train_set, valid_set, dev_loss_set, train_kwargs, valid_kwargs = build_training_sets(
        hparams, model, world
    )
    brain = FineTuneBrain(
        modules={"encoder": model.encoder, "head": model.head},
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        dev_loss_set=dev_loss_set,
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=valid_kwargs,
    )
    # score the checkpoint with the lowest dev WER (or CER, see best_checkpoint_metric)
    brain.checkpointer.recover_if_possible(min_key=best_checkpoint_metric(hparams))
    if not if_main_process():
        return None
    return evaluate_sets(
        model,
        build_test_sets(hparams, model),
        GreedyDecoder(model.vocabulary),
        hparams["output_folder"],
        brain.device,
        hparams["test_batch_size"],
        info={**model.info, "decoder": "greedy", "checkpoint": str(hparams["save_folder"])},
        score_normalizer=score_normalizer,
    )
