"""Positional conv embedding: values against a naive loop, and its padding behaviour."""

import math

import pytest
import torch

from d2v_speech.nn.positional import PositionalConvEmbedding


def naive_positional(x, convs, kernel):
    """x (T, D) of one utterance; explicit loops over output frames and groups."""
    frames, dim = x.shape
    for conv in convs:
        weight, bias = conv.weight, conv.bias  # (D, D / G, k), (D,)
        groups = dim // weight.shape[1]
        per_group = dim // groups
        padded = torch.cat([torch.zeros(kernel // 2, dim), x, torch.zeros(kernel // 2, dim)])
        out = torch.empty(frames, dim)
        for t in range(frames):
            window = padded[t : t + kernel]  # (k, D)
            for g in range(groups):
                channels = slice(g * per_group, (g + 1) * per_group)
                # out[t, o] = b[o] + sum_{c, j} w[o, c, j] * window[j, c]
                out[t, channels] = bias[channels] + torch.einsum(
                    "ocj,jc->o", weight[channels], window[:, channels]
                )
        mean = out.mean(dim=1, keepdim=True)
        var = out.var(dim=1, unbiased=False, keepdim=True)
        normed = (out - mean) / torch.sqrt(var + 1e-5)
        x = 0.5 * normed * (1 + torch.erf(normed / math.sqrt(2)))
    return x


@pytest.mark.parametrize("kernel", [5, 4])
def test_matches_naive_loop(kernel):
    torch.manual_seed(0)
    module = PositionalConvEmbedding(8, depth=2, kernel=kernel, groups=2, mask_padding=False)
    x = torch.randn(1, 11, 8)
    with torch.no_grad():
        out = module(x)[0]
        expected = naive_positional(x[0], [layer.conv for layer in module.layers], kernel)
    assert out.shape == (11, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def padded_pair(depth, kernel, mask_padding):
    torch.manual_seed(0)
    module = PositionalConvEmbedding(8, depth, kernel, groups=2, mask_padding=mask_padding).eval()
    short = torch.randn(1, 20, 8)
    batch = torch.cat([torch.cat([short, torch.zeros(1, 10, 8)], dim=1), torch.randn(1, 30, 8)])
    padding_mask = torch.zeros(2, 30, dtype=torch.bool)
    padding_mask[0, 20:] = True
    with torch.no_grad():
        return module(short)[0], module(batch, padding_mask)[0, :20]


def test_mask_padding_gives_stand_alone_output():
    alone, in_batch = padded_pair(depth=3, kernel=5, mask_padding=True)
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-6)


def test_without_mask_padding_only_the_last_frames_leak():
    """HF/fairseq behaviour: zeroed once, so layers 2..depth read non-zero padded activations.

    The leak reaches exactly (depth - 1) * (kernel // 2) frames before the end of the utterance.
    """
    depth, kernel = 3, 5
    alone, in_batch = padded_pair(depth, kernel, mask_padding=False)
    reach = (depth - 1) * (kernel // 2)
    torch.testing.assert_close(in_batch[: 20 - reach], alone[: 20 - reach], rtol=0, atol=1e-6)
    differs = (in_batch - alone).abs().amax(dim=1) > 1e-4
    assert differs[20 - reach :].all()
