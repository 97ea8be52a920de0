"""The body shared by the fine-tuning recipes (LibriSpeech, Switchboard): train, then score.

A recipe reads its YAML, prepares its CSVs, builds the CTC model, its datasets and a
`FineTuneBrain`, then calls `finetune_and_score`: it trains the Brain (resuming from the last
checkpoint), restores the checkpoint with the lowest dev WER (or the YAML's
`best_checkpoint_metric`) and scores the test sets with greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from speechbrain.utils.distributed import if_main_process

from d2v_speech.asr.decoding import GreedyDecoder
from d2v_speech.asr.evaluation import evaluate_sets
from d2v_speech.training.finetune_brain import FineTuneBrain, best_checkpoint_metric

__all__ = ["finetune_and_score"]


def finetune_and_score(
    brain: FineTuneBrain,
    train_set: Any,
    valid_set: Any,
    *,
    train_loader_kwargs: dict[str, Any],
    valid_loader_kwargs: dict[str, Any],
    test_sets: Callable[[], Mapping[str, Any]],
    output_folder: str | Path,
    test_batch_size: int,
    checkpoint_folder: str | Path,
    score_normalizer: Callable[[str], str] | None = None,
) -> dict | None:
    """Fit `brain`, restore its best checkpoint, score; returns {set: ErrorRates} on the main
    process, None on the others.

    Arguments
    ---------
    brain : FineTuneBrain
        The Brain of the CTC model to train (its `model` hparam), run for its `epoch_counter`.
    train_set, valid_set : DynamicItemDataset
        Training and validation sets (`build_training_sets`).
    train_loader_kwargs, valid_loader_kwargs : mapping
        Their DataLoader arguments, as `Brain.fit` takes them.
    test_sets : callable () -> {name: dataset}
        Builds the test sets (`build_test_sets`); called on the main process only, after the
        best checkpoint is restored.
    output_folder : str or Path
        Where hyp_<set>.tsv, results.json and results.md go.
    test_batch_size : int
        Utterances per decoding batch.
    checkpoint_folder : str or Path
        Named as the scored checkpoint in the results (the run's save folder).
    score_normalizer : callable (str) -> str, optional
        Applied to references and hypotheses before scoring (e.g. Switchboard's).
    """
    brain.fit(
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=valid_loader_kwargs,
    )
    # score the checkpoint with the lowest dev WER (or CER, see best_checkpoint_metric)
    brain.checkpointer.recover_if_possible(min_key=best_checkpoint_metric(brain.hparams))
    if not if_main_process():
        return None
    model = brain.ctc_model
    return evaluate_sets(
        model,
        test_sets(),
        GreedyDecoder(model.vocabulary),
        output_folder,
        brain.device,
        test_batch_size,
        info={**model.info, "decoder": "greedy", "checkpoint": str(checkpoint_folder)},
        score_normalizer=score_normalizer,
    )
