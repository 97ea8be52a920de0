"""Batch lengths rounded to a multiple: the right width, the same content, the same outputs."""

import math

import pytest
import torch

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.data import CTCCollate
from d2v_speech.data.pipelines import CropCollate
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel

LENGTHS = (7350, 5000, 3333)


def ctc_items():
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "id": f"u{i}",
            "sig": torch.randn(n, generator=generator),
            "tokens": torch.tensor([5, 6, 7][: i + 1]),
            "chars": i + 1,
            "text": "A",
        }
        for i, n in enumerate(LENGTHS)
    ]


def micro_ctc_model():
    torch.manual_seed(0)
    config = EncoderConfig(
        conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
        embed_dim=16,
        num_layers=2,
        num_heads=2,
        ffn_dim=32,
        pos_conv_depth=1,
        pos_conv_kernel=5,
        pos_conv_groups=2,
        layer_norm_first=True,
    )
    return CTCModel(Data2VecAudioModel(config), 8, mask_prob=0.0, mask_channel_prob=0.0).eval()


@pytest.mark.parametrize("multiple", [1, 320, 1000])
def test_ctc_collate_pads_up_to_the_multiple_and_keeps_samples(multiple):
    items = ctc_items()
    batch = CTCCollate(length_multiple=multiple)(items)
    assert batch["sig"].shape[1] == math.ceil(max(LENGTHS) / multiple) * multiple
    assert batch["lengths"].tolist() == list(LENGTHS)
    for row, item in enumerate(items):
        assert torch.equal(batch["sig"][row, : LENGTHS[row]], item["sig"])
        assert not batch["sig"][row, LENGTHS[row] :].any()


def test_extra_padding_leaves_the_valid_frames_unchanged():
    model, items = micro_ctc_model(), ctc_items()
    with torch.no_grad():
        plain = model(*[CTCCollate()(items)[k] for k in ("sig", "lengths")])
        rounded = model(*[CTCCollate(length_multiple=3200)(items)[k] for k in ("sig", "lengths")])
    assert plain.frame_lengths.tolist() == rounded.frame_lengths.tolist()
    for row, frames in enumerate(plain.frame_lengths.tolist()):
        torch.testing.assert_close(
            rounded.log_probs[row, :frames], plain.log_probs[row, :frames], rtol=1e-4, atol=1e-5
        )


def pretrain_items():
    generator = torch.Generator().manual_seed(1)
    return [
        {"id": f"p{i}", "sig": torch.randn(n, generator=generator)} for i, n in enumerate(LENGTHS)
    ]


@pytest.mark.parametrize("multiple, max_samples", [(1, 64000), (1000, 64000), (1000, 4200)])
def test_crop_collate_crops_down_to_the_multiple(multiple, max_samples):
    items = pretrain_items()
    batch = CropCollate(crop_to_shortest=True, max_samples=max_samples, length_multiple=multiple)(
        items
    )
    target = min(min(LENGTHS), max_samples) // multiple * multiple
    assert batch["sig"].shape == (3, target)
    assert batch["lengths"].tolist() == [target] * 3
    for row, item in enumerate(items):
        # each row is one contiguous window of its own clip
        windows = item["sig"].unfold(0, target, 1)
        assert (windows == batch["sig"][row]).all(dim=1).any()


def test_crop_collate_pads_up_to_the_multiple_without_cropping():
    items = pretrain_items()
    batch = CropCollate(crop_to_shortest=False, max_samples=64000, length_multiple=1000)(items)
    assert batch["sig"].shape[1] == 8000
    for row, item in enumerate(items):
        assert torch.equal(batch["sig"][row, : LENGTHS[row]], item["sig"])
        assert not batch["sig"][row, LENGTHS[row] :].any()


@pytest.mark.parametrize("collate", [CTCCollate, CropCollate])
def test_a_multiple_below_one_is_refused(collate):
    with pytest.raises(ValueError, match="length_multiple"):
        collate(length_multiple=0)
