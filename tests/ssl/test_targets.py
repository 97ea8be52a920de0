"""Target construction against naive per-utterance, per-channel loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from d2v_speech.ssl.targets import build_targets, instance_norm_over_time


def naive_instance_norm(x, lengths, eps=1e-5):
    out = torch.zeros_like(x, dtype=torch.float64)
    batch, _, channels = x.shape
    for b in range(batch):
        for d in range(channels):
            values = [float(v) for v in x[b, : lengths[b], d]]
            mean = sum(values) / len(values)
            var = sum((v - mean) ** 2 for v in values) / len(values)
            for t, v in enumerate(values):
                out[b, t, d] = (v - mean) / math.sqrt(var + eps)
    return out


def padding_mask_from(lengths, num_frames):
    return torch.arange(num_frames)[None, :] >= torch.tensor(lengths)[:, None]


def test_instance_norm_matches_naive_loop_on_valid_frames():
    torch.manual_seed(0)
    lengths = [7, 4, 2]
    x = torch.randn(3, 7, 5) * 3 + 1
    ours = instance_norm_over_time(x, padding_mask_from(lengths, 7))
    torch.testing.assert_close(ours.double(), naive_instance_norm(x, lengths), atol=1e-5, rtol=0)
    assert ours.dtype == torch.float32


def test_instance_norm_without_padding_equals_torch_instance_norm():
    x = torch.randn(2, 9, 4, dtype=torch.bfloat16)
    expected = F.instance_norm(x.float().transpose(1, 2), eps=1e-5).transpose(1, 2)
    torch.testing.assert_close(instance_norm_over_time(x), expected, atol=1e-5, rtol=1e-5)


def test_padding_content_does_not_change_valid_frames():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 3)
    mask = padding_mask_from([6, 3], 6)
    noisy = x.clone()
    noisy[1, 3:] = 1000.0
    a, b = instance_norm_over_time(x, mask), instance_norm_over_time(noisy, mask)
    torch.testing.assert_close(a, b)
    assert (a[1, 3:] == 0).all()
    alone = instance_norm_over_time(x[1:, :3])
    torch.testing.assert_close(a[1:, :3], alone)


def test_top_k_average_matches_loop():
    torch.manual_seed(2)
    layers = [torch.randn(2, 5, 3) for _ in range(4)]
    lengths = [5, 3]
    mask = padding_mask_from(lengths, 5)
    expected = sum(naive_instance_norm(layer, lengths) for layer in layers[1:]) / 3
    ours = build_targets(layers, top_k=3, padding_mask=mask)
    torch.testing.assert_close(ours.double(), expected, atol=1e-5, rtol=0)
    raw = build_targets(layers, top_k=2, instance_norm=False)
    torch.testing.assert_close(raw, (layers[2] + layers[3]) / 2)


def test_dropped_layer_below_top_k_is_ignored_inside_raises():
    layers = [None, torch.randn(1, 4, 2), torch.randn(1, 4, 2)]
    build_targets(layers, top_k=2)
    with pytest.raises(ValueError, match="layer 0"):
        build_targets(layers, top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        build_targets(layers, top_k=4)


def test_bad_padding_mask_raises():
    with pytest.raises(ValueError, match="padding_mask"):
        instance_norm_over_time(torch.randn(2, 4, 3), torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        instance_norm_over_time(torch.randn(2, 4, 3), torch.zeros(2, 4))
