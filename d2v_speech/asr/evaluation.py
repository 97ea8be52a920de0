"""Decode labelled sets with a CTC model and score them (WER, CER, held-out nats/char).

Shared by the fine-tuning recipe (after training, with the best checkpoint) and `evaluate.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from d2v_speech.asr.ctc_model import CTCModel, CTCOutput, ctc_loss_per_utterance
from d2v_speech.asr.data import CTCCollate
from d2v_speech.asr.scoring import ErrorRates, score, write_hypotheses, write_results
from d2v_speech.data.pipelines import SAMPLE_RATE
from d2v_speech.heap import HeapReleaser

logger = get_logger(__name__)

__all__ = ["SetLogProbs", "SetOutputs", "collect_log_probs", "decode_dataset", "evaluate_sets"]


@dataclass
class SetOutputs:
    """Per-utterance decoding of one set, plus its summed CTC loss and reference characters."""

    ids: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    ctc_loss_sum: float = 0.0
    characters: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    unreadable: list[str] = field(default_factory=list)  # messages naming the files left out

    @property
    def nats_per_char(self) -> float:
        return self.ctc_loss_sum / max(self.characters, 1)


def _refuse_empty(dataset: Any, description: str) -> None:
    if len(dataset) == 0:
        raise ValueError(f"{description}: the set has no utterances")


@torch.no_grad()
def _model_outputs(
    model: CTCModel,
    dataset: Any,
    device: str | torch.device,
    batch_size: int,
    progress: bool,
    description: str,
    unreadable: list[str],
) -> Iterator[tuple[dict, CTCOutput, float]]:
    """(batch, model output, forward seconds) over a dataset, in eval mode (restored after).

    Utterances whose audio cannot be read are left out, logged and added to ``unreadable``."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=CTCCollate())
    was_training = model.training
    model.eval()
    heap = HeapReleaser()
    try:
        for batch in tqdm(loader, desc=description, disable=not progress, dynamic_ncols=True):
            for message in batch["unreadable"]:
                logger.warning("%s: left out unreadable audio: %s", description, message)
            unreadable += batch["unreadable"]
            if not batch["id"]:
                continue
            heap.tick()  # test sets of many lengths fragment the heap as training does
            started = time.perf_counter()
            result = model(batch["sig"].to(device), batch["lengths"].to(device))
            yield batch, result, time.perf_counter() - started
    finally:
        model.train(was_training)


@torch.no_grad()
def decode_dataset(
    model: CTCModel,
    dataset: Any,
    decoder: Callable[[torch.Tensor, torch.Tensor], list[str]],
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    description: str = "decoding",
) -> SetOutputs:
    """Run `model` (eval mode) over a dataset of `load_asr_dataset`; decode with `decoder`."""
    _refuse_empty(dataset, description)
    outputs = SetOutputs()
    blank = model.vocabulary.blank_index
    batches = _model_outputs(
        model, dataset, device, batch_size, progress, description, outputs.unreadable
    )
    for batch, result, forward_seconds in batches:
        started = time.perf_counter()
        losses = ctc_loss_per_utterance(
            result.log_probs,
            result.frame_lengths,
            batch["tokens"].to(device),
            batch["token_lengths"].to(device),
            blank,
        )
        hypotheses = decoder(result.log_probs, result.frame_lengths)
        outputs.compute_seconds += forward_seconds + time.perf_counter() - started
        outputs.audio_seconds += float(batch["lengths"].sum()) / SAMPLE_RATE
        outputs.ids += batch["id"]
        outputs.references += batch["text"]
        outputs.hypotheses += hypotheses
        outputs.ctc_loss_sum += float(losses.sum())
        outputs.characters += int(batch["chars"].sum())
    return outputs


@dataclass
class SetLogProbs:
    """Per-utterance CTC log-probs of one set, to decode again and again (LM weight tuning)."""

    ids: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    log_probs: list[torch.Tensor] = field(default_factory=list)  # each (T_i, V), CPU float32
    unreadable: list[str] = field(default_factory=list)  # messages naming the files left out


@torch.no_grad()
def collect_log_probs(
    model: CTCModel,
    dataset: Any,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    description: str = "log-probs",
) -> SetLogProbs:
    """Run `model` (eval mode) once over a dataset; keep each utterance's valid frames."""
    _refuse_empty(dataset, description)
    outputs = SetLogProbs()
    for batch, result, _ in _model_outputs(
        model, dataset, device, batch_size, progress, description, outputs.unreadable
    ):
        log_probs = result.log_probs.float().cpu()
        for row, length in enumerate(result.frame_lengths.tolist()):
            outputs.log_probs.append(log_probs[row, : int(length)].clone())
        outputs.ids += batch["id"]
        outputs.references += batch["text"]
    return outputs


def evaluate_sets(
    model: CTCModel,
    datasets: Mapping[str, Any],
    decoder: Callable[[torch.Tensor, torch.Tensor], list[str]],
    output_folder: str | Path,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    score_normalizer: Callable[[str], str] | None = None,
) -> dict[str, ErrorRates]:
    """Decode and score every set; write `hyp_<set>.tsv`, `results.json`, `results.md`.

    `info` (run information: model, decoder, train split, ...) goes into both result files,
    together with the held-out nats/char and real-time factor of each set.
    `score_normalizer` (e.g. Switchboard's hesitation removal) maps reference and hypothesis
    alike before scoring; references it empties count every hypothesis word as an insertion.
    The per-utterance file shows the scored (normalised) forms. Utterances whose audio cannot be
    read are left out of the scores and listed under `<set>_unreadable_files` in the results.
    """
    if not datasets:
        raise ValueError("no test set to evaluate")
    output_folder = Path(output_folder)
    results: dict[str, ErrorRates] = {}
    extra: dict[str, Any] = dict(info or {})
    for name, dataset in datasets.items():
        outputs = decode_dataset(model, dataset, decoder, device, batch_size, progress, name)
        if outputs.unreadable:
            extra[f"{name}_unreadable_files"] = outputs.unreadable
        if not outputs.ids:
            raise ValueError(f"{name}: no utterance could be read ({outputs.unreadable[0]} ...)")
        references, hypotheses = outputs.references, outputs.hypotheses
        if score_normalizer is not None:
            references = [score_normalizer(text) for text in references]
            hypotheses = [score_normalizer(text) for text in hypotheses]
        rates = score(references, hypotheses, allow_empty_references=score_normalizer is not None)
        results[name] = rates
        write_hypotheses(output_folder / f"hyp_{name}.tsv", outputs.ids, references, hypotheses)
        extra[f"{name}_nats_per_char"] = round(outputs.nats_per_char, 4)
        extra[f"{name}_real_time_factor"] = round(
            outputs.compute_seconds / max(outputs.audio_seconds, 1e-9), 4
        )
        logger.info(
            "%s: WER %.2f %%, CER %.2f %%, %.3f nats/char (%d utterances)",
            name,
            rates.wer,
            rates.cer,
            outputs.nats_per_char,
            rates.utterances,
        )
    write_results(output_folder, results, extra)
    return results
