"""Regression loss against the per-frame formulas."""

import math

import pytest
import torch

from d2v_speech.ssl.regression import regression_loss


def naive_loss(pred, target, beta, scale):
    losses = []
    for p_row, t_row in zip(pred.tolist(), target.tolist()):
        total = 0.0
        for p, t in zip(p_row, t_row):
            diff = abs(p - t)
            if beta == 0:
                total += diff**2
            elif diff < beta:
                total += 0.5 * diff**2 / beta
            else:
                total += diff - 0.5 * beta
        losses.append(total * scale)
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_matches_naive_formula_with_default_scale(beta):
    torch.manual_seed(0)
    pred, target = torch.randn(6, 16) * 2, torch.randn(6, 16)
    expected = naive_loss(pred, target, beta, 1 / math.sqrt(16))
    ours = regression_loss(pred, target, loss_beta=beta)
    assert ours.shape == (6,)
    torch.testing.assert_close(ours.double(), expected, atol=1e-5, rtol=1e-6)


def test_explicit_scale_and_half_precision_inputs():
    torch.manual_seed(1)
    pred, target = torch.randn(4, 8).half(), torch.randn(4, 8)
    ours = regression_loss(pred, target, loss_scale=2.0)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(
        ours.double(), naive_loss(pred.float(), target, 0.0, 2.0), atol=1e-4, rtol=1e-5
    )


def test_bad_shapes_and_beta_raise():
    with pytest.raises(ValueError, match="N, D"):
        regression_loss(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="loss_beta"):
        regression_loss(torch.randn(3, 4), torch.randn(3, 4), loss_beta=-1.0)
