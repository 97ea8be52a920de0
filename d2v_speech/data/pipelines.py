"""SpeechBrain data pipelines for pretraining: audio reading, per-utterance normalisation,
the augmented student view, and a collate function that crops or pads a batch.

Everything here runs inside data-loader workers, so it depends only on the item id, the
seed and the epoch: a resumed run sees exactly the same crops and augmentations.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import provides, takes

SAMPLE_RATE = 16000


class AudioReadError(ValueError):
    """Raised when an audio file cannot be used; the message names the file."""


def read_mono_16k(path: str) -> np.ndarray:
    """Read a 16 kHz mono file as float32 samples (S,).

    Raises AudioReadError naming the file for a decode failure, a wrong sample rate,
    several channels, an empty file or non-finite samples.
    """
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for broken files
        raise AudioReadError(f"{path}: cannot decode audio ({err})") from err
    if rate != SAMPLE_RATE:
        raise AudioReadError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    if samples.shape[1] != 1:
        raise AudioReadError(f"{path}: {samples.shape[1]} channels, expected mono")
    if samples.shape[0] == 0:
        raise AudioReadError(f"{path}: no samples")
    samples = samples[:, 0]
    if not np.isfinite(samples).all():
        raise AudioReadError(f"{path}: contains NaN or infinite samples")
    return samples


@dataclass(frozen=True)
class UnreadableAudio:
    """Stands in for the waveform of a file that could not be read (``message`` names it).

    The data-loader worker returns it instead of raising, so one broken file never takes a run
    down: the collate functions drop the item and list ``message`` under the batch's
    ``unreadable`` key, and the Brain counts them (:mod:`d2v_speech.training.recipe_brain`).
    """

    message: str


def split_unreadable(items: list[dict], key: str = "sig") -> tuple[list[dict], list[str]]:
    """(items whose ``key`` was read, messages of those that were not)."""
    readable = [item for item in items if not isinstance(item[key], UnreadableAudio)]
    unreadable = [item[key].message for item in items if isinstance(item[key], UnreadableAudio)]
    return readable, unreadable


def normalize_waveform(wav: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance over the utterance (fairseq `normalize: true`). (S,) -> (S,)."""
    return torch.nn.functional.layer_norm(wav, wav.shape, eps=eps)


def item_key(utt_id: str, epoch: int, seed: int) -> int:
    """A stable 63-bit key for (utterance, epoch, seed), identical in every worker and process."""
    return (zlib.crc32(utt_id.encode("utf-8")) + 1_000_003 * epoch + 7_919 * seed) % (2**63)


class PretrainAudioPipeline:
    """Dynamic item: `id`, `wav` -> `sig` (clean, normalised) and, with an augmenter, `sig_aug`.

    The epoch is an attribute the Brain sets at the start of every epoch, before the loader
    forks its workers, so augmentations change per epoch but stay reproducible.

    Arguments
    ---------
    augmenter : callable (np.ndarray (S,), key: int) -> np.ndarray (S,), optional
        The student-view augmentation (d2v_speech.augment.WaveformAugmenter).
    normalize : bool
        Normalise each utterance to zero mean and unit variance (clean and augmented separately,
        as the data2vec-aqc fork does).
    seed : int
        Mixed into the augmentation key.
    """

    def __init__(self, augmenter: Callable | None = None, normalize: bool = True, seed: int = 0):
        self.augmenter = augmenter
        self.normalize = normalize
        self.seed = seed
        self.epoch = 0

    def provided_keys(self) -> list[str]:
        return ["sig", "sig_aug"] if self.augmenter is not None else ["sig"]

    def __call__(self, utt_id: str, wav_path: str):
        """-> sig (S,), or (sig, sig_aug) with an augmenter (SpeechBrain unpacks a tuple);
        :class:`UnreadableAudio` in their place when the file cannot be read."""
        try:
            clean = read_mono_16k(wav_path)
        except AudioReadError as error:
            mark = UnreadableAudio(str(error))
            return mark if self.augmenter is None else (mark, mark)
        clean_tensor = torch.from_numpy(clean)
        sig = normalize_waveform(clean_tensor) if self.normalize else clean_tensor
        if self.augmenter is None:
            return sig
        augmented = self.augmenter(clean, item_key(utt_id, self.epoch, self.seed))
        aug_tensor = torch.as_tensor(np.asarray(augmented, dtype=np.float32))
        return sig, normalize_waveform(aug_tensor) if self.normalize else aug_tensor


def load_pretrain_dataset(
    csv_paths: Sequence[str],
    data_root: str,
    pipeline: PretrainAudioPipeline,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
) -> DynamicItemDataset:
    """Concatenate prepared CSVs (ID, duration, wav, ...) into one dataset with the audio pipeline.

    Utterances outside [min_duration, max_duration] seconds are dropped, as fairseq's
    min/max_sample_size do.
    """
    rows: dict[str, dict] = {}
    for path in csv_paths:
        part = DynamicItemDataset.from_csv(path, replacements={"data_root": data_root})
        for utt_id in part.data_ids:
            if utt_id in rows:
                raise ValueError(f"{path}: utterance id {utt_id} appears in two CSVs")
            rows[utt_id] = part.data[utt_id]
    if not rows:
        raise ValueError(f"no utterances in {list(csv_paths)}")
    dataset = DynamicItemDataset(rows)
    dataset = dataset.filtered_sorted(
        key_min_value={"duration": min_duration}, key_max_value={"duration": max_duration}
    )
    if len(dataset) == 0:
        raise ValueError(
            f"no utterance of {list(csv_paths)} lasts between {min_duration} and {max_duration} s"
        )
    keys = pipeline.provided_keys()
    stage = takes("id", "wav")(provides(*keys)(pipeline))
    dataset.add_dynamic_item(stage)
    dataset.set_output_keys(["id", *keys])
    return dataset


class CropCollate:
    """Collate pretraining items into padded tensors, optionally cropping like fairseq.

    `crop_to_shortest=True` reproduces the fork (every clip cropped to the shortest clip of the
    batch, at most `max_samples`, at a random offset shared by the clean and augmented views):
    no padding at all. With `crop_to_shortest=False` clips are only capped at `max_samples` and
    padded; the model handles padding through the returned lengths.

    `length_multiple` rounds the batch length to a multiple of that many samples (down when
    cropping, up when padding): a few distinct batch shapes instead of one per batch, so that
    shape-specialised kernels (oneDNN bf16 on CPU, cuDNN) are built once and reused.

    Returns a dict: `id` (list), `sig` (B, S) float, `lengths` (B,) long samples,
    `sig_aug` (B, S) when present, and `unreadable` (messages of the items dropped because their
    file could not be read; when none is left, only `id` (empty) and `unreadable`).
    """

    def __init__(
        self,
        crop_to_shortest: bool = True,
        max_samples: int = 320000,
        seed: int = 0,
        length_multiple: int = 1,
    ):
        if length_multiple < 1:
            raise ValueError(f"length_multiple must be >= 1, got {length_multiple}")
        self.crop_to_shortest = crop_to_shortest
        self.max_samples = max_samples
        self.seed = seed
        self.length_multiple = length_multiple
        self.epoch = 0

    def _batch_length(self, lengths: list[int]) -> int:
        """Samples per row: the shortest (cropping) or longest (padding) clip, capped, rounded."""
        multiple = self.length_multiple
        if self.crop_to_shortest:
            target = min(min(lengths), self.max_samples)
            return max(target // multiple * multiple, min(target, multiple))
        target = min(max(lengths), self.max_samples)
        return -(-target // multiple) * multiple

    def _offset(self, utt_id: str, length: int, target: int) -> int:
        if length <= target:
            return 0
        rng = np.random.default_rng(item_key(utt_id, self.epoch, self.seed + 1))
        return int(rng.integers(0, length - target + 1))

    def __call__(self, items: list[dict]) -> dict:
        items, unreadable = split_unreadable(items)
        if not items:
            return {"id": [], "unreadable": unreadable}
        lengths = [int(item["sig"].shape[0]) for item in items]
        target = self._batch_length(lengths)
        keys = [k for k in ("sig", "sig_aug") if k in items[0]]
        batch = {k: torch.zeros(len(items), target) for k in keys}
        out_lengths = torch.zeros(len(items), dtype=torch.long)
        for row, item in enumerate(items):
            length = min(lengths[row], target)
            start = self._offset(item["id"], lengths[row], length)
            for k in keys:
                batch[k][row, :length] = item[k][start : start + length]
            out_lengths[row] = length
        batch["id"] = [item["id"] for item in items]
        batch["lengths"] = out_lengths
        batch["unreadable"] = unreadable
        return batch


class BlockMaskCollate:
    """A :class:`CropCollate` that also draws data2vec 2.0's clone masks, as fairseq's dataset does.

    Masks are drawn after cropping, from each clip's valid frame count, so every row hides
    exactly ``masker.num_masked(frames)`` frames (fairseq draws them before cropping, which
    breaks its equal-count assumption). They depend only on (utterance, epoch, seed), like the
    crops, so a resumed run sees the same masks.

    Arguments
    ---------
    collate : CropCollate
        Crops / pads the batch.
    masker : callable
        ``masker.utterance_masks(num_frames, generator) -> (M, num_frames)`` bool and
        ``masker.num_clones`` (``d2v_speech.ssl.block_masker.BlockMasker``).
    frame_counter : object
        ``frame_counter.num_frames(num_samples) -> int`` (the model's ``EncoderConfig``).
    seed : int
        Mixed into every mask's generator seed.

    Adds ``mask`` (B * M, T) bool to the batch, row ``b * M + m`` for clone m of clip b.
    """

    def __init__(self, collate: CropCollate, masker, frame_counter, seed: int = 0):
        self.collate = collate
        self.masker = masker
        self.frame_counter = frame_counter
        self.seed = seed

    @property
    def max_samples(self) -> int:
        return self.collate.max_samples

    @property
    def epoch(self) -> int:
        return self.collate.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.collate.epoch = value

    def __call__(self, items: list[dict]) -> dict:
        batch = self.collate(items)
        if not batch["id"]:
            return batch
        num_frames = self.frame_counter.num_frames(batch["sig"].shape[1])
        clones = self.masker.num_clones
        masks = torch.zeros(len(batch["id"]) * clones, num_frames, dtype=torch.bool)
        for row, (utt_id, length) in enumerate(zip(batch["id"], batch["lengths"].tolist())):
            generator = torch.Generator().manual_seed(item_key(utt_id, self.epoch, self.seed + 2))
            frames = self.frame_counter.num_frames(length)
            masks[row * clones : (row + 1) * clones, :frames] = self.masker.utterance_masks(
                frames, generator
            )
        batch["mask"] = masks
        return batch
