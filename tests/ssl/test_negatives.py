"""sample_negatives against naive loops and a chi-square uniformity check."""

import pytest
import torch
from scipy.stats import chi2

from d2v_speech.ssl.negatives import sample_negatives


def test_gathered_vectors_match_indices_and_rules():
    y = torch.randn(3, 7, 4)
    counts = torch.tensor([7, 5, 2])
    negatives, neg_index = sample_negatives(
        y, 9, counts, generator=torch.Generator().manual_seed(0)
    )
    assert negatives.shape == (9, 3, 7, 4)
    assert neg_index.dtype == torch.long
    for n in range(9):
        for b in range(3):
            for t in range(7):
                j = int(neg_index[n, b, t])
                assert j != t, "a frame is never its own negative"
                assert 0 <= j < int(counts[b]), "never a padding frame"
                assert torch.equal(negatives[n, b, t], y[b, j])


def test_two_valid_frames_always_pick_the_other():
    y = torch.randn(1, 4, 3)
    _, neg_index = sample_negatives(y, 50, torch.tensor([2]))
    assert torch.equal(neg_index[:, 0, 0], torch.ones(50, dtype=torch.long))
    assert torch.equal(neg_index[:, 0, 1], torch.zeros(50, dtype=torch.long))
    # padding frames draw from the two valid ones only
    assert set(neg_index[:, 0, 2:].unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("frame", [0, 3, 5])
def test_uniform_over_allowed_frames(frame):
    count, draws = 6, 30_000
    y = torch.randn(1, 8, 2)
    _, neg_index = sample_negatives(
        y, draws, torch.tensor([count]), generator=torch.Generator().manual_seed(frame)
    )
    observed = torch.bincount(neg_index[:, 0, frame], minlength=8).double()
    allowed = [j for j in range(count) if j != frame]
    assert observed[frame] == 0 and observed[count:].sum() == 0
    expected = draws / len(allowed)
    statistic = sum((observed[j].item() - expected) ** 2 / expected for j in allowed)
    assert statistic < chi2.ppf(0.999, df=len(allowed) - 1)


def test_seeded_and_default_counts():
    y = torch.randn(2, 6, 3)
    first = sample_negatives(y, 5, generator=torch.Generator().manual_seed(3))[1]
    again = sample_negatives(y, 5, generator=torch.Generator().manual_seed(3))[1]
    other = sample_negatives(y, 5, generator=torch.Generator().manual_seed(4))[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert int(first.max()) <= 5


def test_gradient_reaches_the_sampled_vectors():
    y = torch.randn(1, 3, 2, requires_grad=True)
    negatives, neg_index = sample_negatives(y, 4, generator=torch.Generator().manual_seed(0))
    negatives.sum().backward()
    expected = torch.zeros(3)
    for j in neg_index.flatten().tolist():
        expected[j] += 1
    torch.testing.assert_close(y.grad[0, :, 0], expected)


def test_bad_inputs_raise():
    y = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="B, M, C"):
        sample_negatives(y[0], 3)
    with pytest.raises(ValueError, match="num_negatives"):
        sample_negatives(y, 0)
    with pytest.raises(ValueError, match=">= 2 valid frames"):
        sample_negatives(y, 3, torch.tensor([5, 1]))
    with pytest.raises(ValueError, match="exceed"):
        sample_negatives(y, 3, torch.tensor([6, 5]))
    with pytest.raises(ValueError, match="shape"):
        sample_negatives(y, 3, torch.tensor([5]))
