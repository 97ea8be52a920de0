"""Fast paths of the aqc step against the straightforward computations they replace."""

import pytest
import torch
import torch.nn.functional as F

from d2v_speech.nn.feature_encoder import ConvBlock
from d2v_speech.ssl.aqc import codes_in_use
from d2v_speech.ssl.contrastive import (
    cluster_scaled_contrastive_loss,
    within_utterance_contrastive_loss,
)
from d2v_speech.ssl.negatives import sample_negatives


def quantized_like(batch, frames, dim, seed):
    """(B, M, C) rows drawn from a 3-entry codebook per utterance: many exact duplicates."""
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(batch, 3, dim, generator=generator)
    codes = torch.randint(0, 3, (batch, frames), generator=generator)
    return torch.stack([codebook[b, codes[b]] for b in range(batch)])


def both_losses(anchor, candidates, num_negatives, official, seed):
    """(indexed loss, stats, grads) and the same from gathered negatives, from one draw."""
    batch, frames, dim = candidates.shape
    generator = torch.Generator().manual_seed(seed)
    negatives, neg_index = sample_negatives(candidates, num_negatives, generator=generator)
    same_cluster = torch.rand(neg_index.shape, generator=generator) < 0.4
    results = []
    for indexed in (True, False):
        a = anchor.clone().requires_grad_(True)
        c = candidates.clone().requires_grad_(True)
        if indexed:
            loss, stats = within_utterance_contrastive_loss(
                a, c, neg_index, same_cluster, official_cluster_scaling=official
            )
        else:
            gathered = c.reshape(batch * frames, dim)[
                (neg_index + frames * torch.arange(batch).view(1, batch, 1)).reshape(-1)
            ].view(num_negatives, batch * frames, dim)
            loss, stats = cluster_scaled_contrastive_loss(
                a.reshape(-1, dim),
                c.reshape(-1, dim),
                gathered,
                same_cluster.reshape(num_negatives, -1),
                official_cluster_scaling=official,
            )
        loss.backward()
        results.append((loss.detach(), stats, a.grad, c.grad))
    return results


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("duplicates", [True, False])
def test_indexed_loss_equals_gathered_negatives_loss(official, duplicates):
    batch, frames, dim = 3, 9, 8
    generator = torch.Generator().manual_seed(0)
    anchor = torch.randn(batch, frames, dim, generator=generator)
    if duplicates:
        candidates = quantized_like(batch, frames, dim, seed=1)
    else:
        candidates = torch.randn(batch, frames, dim, generator=generator)
    fast, reference = both_losses(anchor, candidates, 7, official, seed=2)
    torch.testing.assert_close(fast[0], reference[0], rtol=1e-5, atol=1e-5)
    for key in ("correct", "count", "neg_is_pos_fraction", "same_cluster_fraction"):
        assert fast[1][key].item() == pytest.approx(reference[1][key].item()), key
    assert fast[1]["cluster_scaling_applied"].item() == reference[1]["cluster_scaling_applied"]
    assert (reference[1]["neg_is_pos_fraction"].item() > 0) == duplicates
    torch.testing.assert_close(fast[2], reference[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[3], reference[3], rtol=1e-5, atol=1e-6)


def test_negative_zero_rows_count_as_duplicates_like_eq():
    """``==`` says -0.0 == 0.0; the fingerprint must not split such rows."""
    candidates = torch.tensor([[[0.0, 1.0], [-0.0, 1.0], [2.0, 3.0]]])
    neg_index = torch.tensor([[[1, 0, 0]], [[2, 2, 1]]])
    same_cluster = torch.zeros(2, 1, 3, dtype=torch.bool)
    anchor = torch.randn(1, 3, 2)
    _, stats = within_utterance_contrastive_loss(anchor, candidates, neg_index, same_cluster)
    # frame 0 -> 1 and frame 1 -> 0 are duplicates; frame 2's negatives are not
    assert stats["neg_is_pos_fraction"].item() == pytest.approx(2 / 6)


def test_indexed_loss_bad_inputs_raise():
    anchor, candidates = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    neg_index = torch.zeros(5, 2, 4, dtype=torch.long)
    same = torch.zeros(5, 2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="anchor and candidates"):
        within_utterance_contrastive_loss(anchor, candidates[:, :3], neg_index, same)
    with pytest.raises(ValueError, match="neg_index must be"):
        within_utterance_contrastive_loss(anchor, candidates, neg_index[:, :1], same)
    with pytest.raises(ValueError, match="long"):
        within_utterance_contrastive_loss(anchor, candidates, neg_index.int(), same)
    with pytest.raises(ValueError, match="same_cluster"):
        within_utterance_contrastive_loss(anchor, candidates, neg_index, same.float())
    with pytest.raises(ValueError, match="scale_factor"):
        within_utterance_contrastive_loss(anchor, candidates, neg_index, same, 1.5)


@pytest.mark.parametrize(
    ("in_channels", "kernel", "stride", "bias", "norm"),
    [
        (1, 10, 5, False, "layer_norm"),
        (6, 3, 2, True, "layer_norm"),
        (6, 2, 2, False, None),
        (1, 4, 3, True, "group_norm"),
    ],
)
def test_conv_block_equals_conv1d_reference(in_channels, kernel, stride, bias, norm):
    torch.manual_seed(0)
    block = ConvBlock(in_channels, 5, kernel, stride, bias, norm)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x = torch.randn(2, 41, in_channels, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)

    out = block(x)
    ref = F.conv1d(x_ref.transpose(1, 2), block.conv.weight, block.conv.bias, stride=stride)
    if norm == "layer_norm":
        ref = F.layer_norm(
            ref.transpose(1, 2), (5,), block.layer_norm.weight, block.layer_norm.bias
        ).transpose(1, 2)
    elif norm == "group_norm":
        ref = F.group_norm(ref, 5, block.layer_norm.weight, block.layer_norm.bias)
    ref = F.gelu(ref).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)

    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [x, block.conv.weight])
    ref_grads = torch.autograd.grad((ref * weights).sum(), [x_ref, block.conv.weight])
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_codes_in_use_counts_distinct_codes_per_group():
    codes = torch.tensor([[0, 3], [0, 3], [2, 1], [5, 3]])
    expected = sum(len(set(codes[:, g].tolist())) for g in range(codes.shape[1]))
    assert codes_in_use(codes, num_vars=6).item() == expected == 5
