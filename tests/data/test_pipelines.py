"""Pretraining pipelines: an unreadable file becomes a marker in the worker, and the collate
functions drop it and report it instead of raising."""

import numpy as np
import soundfile as sf

from d2v_speech.data.pipelines import (
    BlockMaskCollate,
    CropCollate,
    PretrainAudioPipeline,
    UnreadableAudio,
)
from d2v_speech.ssl.block_masker import BlockMasker


class Frames:
    """The tiny CNN's frame count: one frame per 320 samples."""

    def num_frames(self, samples: int) -> int:
        return samples // 320


def test_unreadable_files_are_dropped_by_the_collates_and_reported(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, 0.1 * np.sin(np.arange(16000) / 5.0), 16000, subtype="PCM_16")
    truncated = tmp_path / "bad.flac"
    truncated.write_bytes(good.read_bytes()[:300])
    pipeline = PretrainAudioPipeline(augmenter=lambda x, key: x * 0.5)
    sig, sig_aug = pipeline("good", str(good))
    assert sig.shape == (16000,) and sig_aug.shape == (16000,)
    marks = pipeline("bad", str(truncated))
    assert all(isinstance(m, UnreadableAudio) and "bad.flac" in m.message for m in marks)
    missing = PretrainAudioPipeline()("gone", str(tmp_path / "gone.flac"))
    assert isinstance(missing, UnreadableAudio) and "gone.flac" in missing.message

    items = [
        {"id": "good", "sig": sig, "sig_aug": sig_aug},
        {"id": "bad", "sig": marks[0], "sig_aug": marks[1]},
    ]
    collate = BlockMaskCollate(CropCollate(max_samples=8000), BlockMasker(num_clones=2), Frames())
    batch = collate(items)
    assert batch["id"] == ["good"] and batch["sig"].shape == (1, 8000)
    assert batch["mask"].shape == (2, 25) and len(batch["unreadable"]) == 1
    empty = collate(items[1:])
    assert empty == {"id": [], "unreadable": [marks[0].message]}
