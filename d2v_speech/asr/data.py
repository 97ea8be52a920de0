"""Labelled speech for CTC: datasets from prepared CSVs, checks, collate, and update-sized epochs.

CSV columns are those of `d2v_speech.corpora.librispeech.prepare` (`ID,duration,wav,spk_id,wrd`);
paths may use the `$data_root` (LibriSpeech) and `$ll_root` (Libri-light) placeholders. CSVs that
cut utterances out of long recordings (Switchboard: `start`, `stop` in samples at the file's rate,
`channel` A/B) are read segment by segment and resampled to 16 kHz.

Every transcript is checked against the vocabulary and every duration against the encoder's
receptive field before training starts, so a bad corpus fails at once with a list of the
offending utterances instead of hours later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from speechbrain.dataio.dataio import load_data_csv
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import provides, takes

from d2v_speech.asr.vocabulary import count_characters
from d2v_speech.corpora.switchboard.segments import read_segment, to_model_rate
from d2v_speech.data.pipelines import (
    SAMPLE_RATE,
    AudioReadError,
    UnreadableAudio,
    normalize_waveform,
    read_mono_16k,
    split_unreadable,
)

__all__ = [
    "AudioTooShortError",
    "CTCCollate",
    "FixedUpdatesBatchSampler",
    "TranscriptError",
    "check_durations",
    "check_transcripts",
    "fixed_subset",
    "load_asr_dataset",
]

#: how many offending utterances an error message lists before summarising
MAX_LISTED = 20


class TranscriptError(ValueError):
    """Transcripts with characters the vocabulary cannot encode (all of them listed)."""


class AudioTooShortError(ValueError):
    """Audio shorter than the encoder's receptive field (no output frame)."""


def _listing(entries: list[str]) -> str:
    shown = "\n  ".join(entries[:MAX_LISTED])
    more = f"\n  ... and {len(entries) - MAX_LISTED} more" if len(entries) > MAX_LISTED else ""
    return f"\n  {shown}{more}"


def check_transcripts(rows: Mapping[str, Mapping[str, Any]], vocabulary: Any, source: str) -> None:
    """Raise TranscriptError naming every utterance whose `wrd` has unknown characters.

    Empty transcripts are reported too: CTC has nothing to learn from them and WER is undefined.
    """
    problems = []
    for utt_id, row in rows.items():
        text = str(row.get("wrd", ""))
        if not text.strip():
            problems.append(f"{utt_id}: empty transcript")
            continue
        unknown = vocabulary.unknown_characters(text)
        if unknown:
            problems.append(f"{utt_id}: {unknown} in {text!r}")
    if problems:
        raise TranscriptError(
            f"{source}: {len(problems)} transcript(s) cannot be encoded by the "
            f"{vocabulary.kind} vocabulary (characters outside it, or empty); fix or drop "
            f"them:{_listing(problems)}"
        )


def check_durations(rows: Mapping[str, Mapping[str, Any]], min_samples: int, source: str) -> None:
    """Raise AudioTooShortError naming utterances shorter than `min_samples` (CSV durations)."""
    short = [
        f"{utt_id}: {float(row['duration']):.4f} s = {round(float(row['duration']) * SAMPLE_RATE)} "
        "samples"
        for utt_id, row in rows.items()
        if round(float(row["duration"]) * SAMPLE_RATE) < min_samples
    ]
    if short:
        raise AudioTooShortError(
            f"{source}: {len(short)} utterance(s) are shorter than the encoder's receptive field "
            f"({min_samples} samples = {min_samples / SAMPLE_RATE * 1000:.0f} ms) and yield no "
            f"frame; drop them (e.g. min_duration) or fix the audio:{_listing(short)}"
        )


class ASRAudioPipeline:
    """Dynamic item `id`, `wav` -> `sig` (S,) float32, optionally augmented and normalised.

    `augmenter` (training sets only) is called as `augmenter(samples (S,), utt_id)` before the
    per-utterance normalisation, e.g. `d2v_speech.asr.augment.FinetuneAugmenter`.
    """

    def __init__(self, normalize: bool, min_samples: int, augmenter: Any = None):
        self.normalize = normalize
        self.min_samples = min_samples
        self.augmenter = augmenter

    def _finish(self, utt_id: str, samples: torch.Tensor, where: str) -> torch.Tensor:
        """Augment, check the length against the receptive field, normalise."""
        if self.augmenter is not None:
            samples = self.augmenter(samples, utt_id)
        if samples.shape[0] < self.min_samples:
            raise AudioTooShortError(
                f"utterance {utt_id} ({where}): {samples.shape[0]} samples at {SAMPLE_RATE} Hz"
                f"{' after augmentation' if self.augmenter is not None else ''}, shorter than the "
                f"encoder's receptive field ({self.min_samples} samples)"
            )
        return normalize_waveform(samples) if self.normalize else samples

    def __call__(self, utt_id: str, wav_path: str) -> torch.Tensor | UnreadableAudio:
        try:
            samples = torch.from_numpy(read_mono_16k(wav_path))
        except AudioReadError as error:  # dropped by the collate, counted by the Brain
            return UnreadableAudio(str(error))
        return self._finish(utt_id, samples, wav_path)


class SegmentAudioPipeline(ASRAudioPipeline):
    """Dynamic item `id`, `wav`, `start`, `stop`, `channel` -> `sig` (S,) float32 at 16 kHz.

    `start`/`stop` are samples at the file's own rate (8 kHz for Switchboard); the segment is
    resampled to the model's 16 kHz after reading.
    """

    def __call__(self, utt_id: str, wav_path: str, start: str, stop: str, channel: str):
        try:
            samples, rate = read_segment(wav_path, int(start), int(stop), channel)
        except AudioReadError as error:
            return UnreadableAudio(str(error))
        samples = to_model_rate(torch.from_numpy(samples), rate)
        return self._finish(utt_id, samples, f"{wav_path} [{start}, {stop})")


SEGMENT_COLUMNS = ("start", "stop", "channel")


class TextPipeline:
    """Dynamic item `wrd` -> `text` (normalised), `tokens` (U,) long, `chars` (int)."""

    def __init__(self, vocabulary: Any):
        self.vocabulary = vocabulary

    def __call__(self, words: str):
        text = self.vocabulary.normalize(words)
        yield text
        yield torch.tensor(self.vocabulary.encode(text), dtype=torch.long)
        yield count_characters(text)


def load_asr_dataset(
    csv_paths: Sequence[str | Path],
    replacements: Mapping[str, str],
    vocabulary: Any,
    normalize: bool,
    min_samples: int,
    min_duration: float | None = None,
    max_duration: float | None = None,
    augmenter: Any = None,
) -> DynamicItemDataset:
    """Concatenate CSVs into one dataset with output keys id, sig, text, tokens, chars.

    Utterances outside [min_duration, max_duration] seconds are dropped first; then every
    remaining transcript and duration is checked (see module docstring). `augmenter`, for
    training sets only, is applied to every waveform as it is read (see `ASRAudioPipeline`).
    """
    rows: dict[str, dict] = {}
    for path in csv_paths:
        for utt_id, row in load_data_csv(str(path), replacements=dict(replacements)).items():
            if utt_id in rows:
                raise ValueError(f"{path}: utterance id {utt_id} appears twice")
            rows[utt_id] = row
    source = ", ".join(str(p) for p in csv_paths)
    if not rows:
        raise ValueError(f"no utterances in {source}")
    low = float("-inf") if min_duration is None else min_duration
    high = float("inf") if max_duration is None else max_duration
    rows = {k: v for k, v in rows.items() if low <= float(v["duration"]) <= high}
    if not rows:
        raise ValueError(
            f"no utterance of {source} lasts between {min_duration} and {max_duration} s"
        )
    check_transcripts(rows, vocabulary, source)
    check_durations(rows, min_samples, source)
    dataset = DynamicItemDataset(rows)
    segmented = [all(c in row for c in SEGMENT_COLUMNS) for row in rows.values()]
    if any(segmented) and not all(segmented):
        raise ValueError(f"{source}: some rows have {SEGMENT_COLUMNS} columns and some do not")
    if segmented[0]:
        audio = takes("id", "wav", *SEGMENT_COLUMNS)(
            provides("sig")(SegmentAudioPipeline(normalize, min_samples, augmenter))
        )
    else:
        audio = takes("id", "wav")(
            provides("sig")(ASRAudioPipeline(normalize, min_samples, augmenter))
        )
    dataset.add_dynamic_item(audio)
    dataset.add_dynamic_item(
        takes("wrd")(provides("text", "tokens", "chars")(TextPipeline(vocabulary)))
    )
    dataset.set_output_keys(["id", "sig", "text", "tokens", "chars"])
    return dataset


def fixed_subset(dataset: DynamicItemDataset, count: int, seed: int) -> DynamicItemDataset:
    """`count` utterances drawn once with `seed` (all if fewer), in ascending duration order."""
    ids = list(dataset.data_ids)
    if count < len(ids):
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
        ids = [ids[i] for i in order[:count].tolist()]
    chosen = set(ids)
    return dataset.filtered_sorted(
        key_test={"id": lambda utt_id: utt_id in chosen}, sort_key="duration"
    )


class CTCCollate:
    """Items -> dict: id (list), sig (B, S) zero padded, lengths (B,) samples, tokens (B, U)
    padded with 0, token_lengths (B,), chars (B,), text (list), unreadable (messages of the items
    dropped because their audio could not be read; when none is left, only id and unreadable).

    `length_multiple` pads S up to a multiple of that many samples: a few distinct batch shapes
    instead of one per batch, so shape-specialised kernels (oneDNN bf16 on CPU) are reused. The
    model masks padding, so the outputs of the valid frames do not change.
    """

    def __init__(self, length_multiple: int = 1):
        if length_multiple < 1:
            raise ValueError(f"length_multiple must be >= 1, got {length_multiple}")
        self.length_multiple = length_multiple

    def __call__(self, items: list[dict]) -> dict[str, Any]:
        items, unreadable = split_unreadable(items)
        if not items:
            return {"id": [], "unreadable": unreadable}
        lengths = torch.tensor([item["sig"].shape[0] for item in items], dtype=torch.long)
        token_lengths = torch.tensor([item["tokens"].shape[0] for item in items], dtype=torch.long)
        padded = -(-int(lengths.max()) // self.length_multiple) * self.length_multiple
        sig = torch.zeros(len(items), padded)
        tokens = torch.zeros(len(items), max(1, int(token_lengths.max())), dtype=torch.long)
        for row, item in enumerate(items):
            sig[row, : lengths[row]] = item["sig"]
            tokens[row, : token_lengths[row]] = item["tokens"]
        return {
            "id": [item["id"] for item in items],
            "sig": sig,
            "lengths": lengths,
            "tokens": tokens,
            "token_lengths": token_lengths,
            "chars": torch.tensor([item["chars"] for item in items], dtype=torch.long),
            "text": [item["text"] for item in items],
            "unreadable": unreadable,
        }


class FixedUpdatesBatchSampler(torch.utils.data.Sampler):
    """Epochs of exactly `batches_per_epoch` batches, drawn from fresh passes of a batch sampler.

    Small fine-tuning sets (10 min of audio is less than one BASE update) make data epochs
    useless as a validation clock; this makes an "epoch" a fixed number of updates instead
    (fairseq validates every N updates). Epoch e reads passes e*(K+1), e*(K+1)+1, ... of the
    inner sampler (K = batches_per_epoch), each reshuffled by its `set_epoch`, so every epoch's
    batches depend on (seed, e) only: resuming mid-epoch replays exactly.

    Parameters
    ----------
    batch_sampler : Sampler with `set_epoch`
        For example SpeechBrain's `DynamicBatchSampler(shuffle=True)`.
    batches_per_epoch : int
        Batches per epoch over all DDP ranks (updates x accumulation x world size).
    """

    def __init__(self, batch_sampler: Any, batches_per_epoch: int):
        if batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
        self.batch_sampler = batch_sampler
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _pass(self, inner_pass: int) -> list[list[int]]:
        # DynamicBatchSampler logs every regeneration at INFO: thousands of lines per epoch here
        sampler_logger = logging.getLogger(type(self.batch_sampler).__module__)
        level = sampler_logger.level
        sampler_logger.setLevel(logging.WARNING)
        try:
            self.batch_sampler.set_epoch(inner_pass)
            return list(iter(self.batch_sampler))
        finally:
            sampler_logger.setLevel(level)

    def __iter__(self) -> Iterator[list[int]]:
        produced = 0
        inner_pass = self.epoch * (self.batches_per_epoch + 1)
        while produced < self.batches_per_epoch:
            batches = self._pass(inner_pass)
            if not batches:
                raise ValueError("the inner batch sampler produced no batch")
            yield from batches[: self.batches_per_epoch - produced]
            produced += len(batches)
            inner_pass += 1
