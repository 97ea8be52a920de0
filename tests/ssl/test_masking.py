"""Span masking against a naive loop implementation of fairseq's algorithm."""

import random

import pytest
import torch

from d2v_speech.ssl.masking import compute_channel_mask, compute_span_mask


def naive_fairseq_row(sz, mask_prob, mask_length, min_masks, rng):
    """fairseq compute_mask_indices for one row (static lengths, overlaps allowed), as a loop."""
    num_mask = max(min_masks, int(mask_prob * sz / mask_length + rng.random()))
    min_len = mask_length
    if sz - min_len <= num_mask:
        min_len = sz - num_mask - 1
    starts = rng.sample(range(sz - min_len), num_mask)
    masked = set()
    for start in starts:
        for offset in range(mask_length):
            if start + offset < sz:
                masked.add(start + offset)
    return masked


def runs(row):
    """Lengths of the maximal runs of True in a 1-D bool tensor."""
    lengths, current = [], 0
    for value in row.tolist():
        if value:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    if current:
        lengths.append(current)
    return lengths


def test_masked_fraction_matches_naive_fairseq_loop():
    rng = random.Random(0)
    num_rows, sz = 400, 500
    naive_counts = [len(naive_fairseq_row(sz, 0.65, 10, 1, rng)) for _ in range(num_rows)]
    mask = compute_span_mask(
        (num_rows, sz),
        None,
        0.65,
        10,
        1,
        require_same_masks=False,
        generator=torch.Generator().manual_seed(0),
    )
    ours = mask.sum(dim=1).float()
    naive = torch.tensor(naive_counts, dtype=torch.float)
    # Published/simulated coverage for p=0.65, L=10 is ~0.49.
    assert abs(ours.mean().item() / sz - 0.49) < 0.01
    assert abs(ours.mean().item() - naive.mean().item()) / sz < 0.01
    assert abs(ours.std().item() - naive.std().item()) < 0.25 * naive.std().item()


def test_spans_are_runs_of_at_least_mask_length_and_never_cover_last_frame():
    mask = compute_span_mask(
        (50, 200),
        None,
        0.65,
        10,
        require_same_masks=False,
        generator=torch.Generator().manual_seed(1),
    )
    for row in mask:
        assert all(length >= 10 for length in runs(row))
        assert not row[-1]  # starts < sz - L, so the last frame is never reached


def test_same_count_per_row_and_never_on_padding():
    lengths = torch.tensor([300, 250, 120, 60, 33])
    mask = compute_span_mask((5, 300), lengths, generator=torch.Generator().manual_seed(2))
    counts = mask.sum(dim=1)
    assert len(set(counts.tolist())) == 1 and counts[0] > 0
    for row, length in zip(mask, lengths.tolist()):
        assert not row[length:].any()


def test_min_masks_forces_spans_when_probability_is_zero():
    mask = compute_span_mask(
        (20, 100),
        None,
        mask_prob=0.0,
        mask_length=5,
        min_masks=2,
        require_same_masks=False,
        generator=torch.Generator().manual_seed(3),
    )
    counts = mask.sum(dim=1)
    assert ((counts >= 6) & (counts <= 10)).all()  # two distinct starts, spans of 5
    none = compute_span_mask((4, 100), None, mask_prob=0.0, min_masks=0)
    assert not none.any()


@pytest.mark.parametrize("length", [2, 3, 5, 9, 10, 11, 12])
def test_short_rows_never_crash_and_keep_a_visible_frame(length):
    generator = torch.Generator().manual_seed(length)
    for _ in range(50):
        mask = compute_span_mask(
            (1, 20), torch.tensor([length]), require_same_masks=False, generator=generator
        )
        masked = int(mask.sum())
        assert 1 <= masked <= length - 1
        assert not mask[0, length:].any()


def test_row_that_cannot_be_masked_raises_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        compute_span_mask((2, 20), torch.tensor([20, 1]))


def test_seeded_generator_reproduces_the_mask():
    first = compute_span_mask((4, 300), None, generator=torch.Generator().manual_seed(7))
    again = compute_span_mask((4, 300), None, generator=torch.Generator().manual_seed(7))
    other = compute_span_mask((4, 300), None, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_mask_dropout_unmasks_the_rounded_fraction():
    generator = torch.Generator().manual_seed(4)
    full = compute_span_mask((3, 400), None, generator=generator)
    generator = torch.Generator().manual_seed(4)
    dropped = compute_span_mask((3, 400), None, mask_dropout=0.3, generator=generator)
    for before, after in zip(full.sum(dim=1).tolist(), dropped.sum(dim=1).tolist()):
        assert after == before - round(before * 0.3)
    assert not (dropped & ~full).any()  # dropout only removes masked frames


def test_channel_mask_has_equal_counts_and_span_structure():
    mask = compute_channel_mask(
        6, 64, mask_prob=0.5, mask_length=8, generator=torch.Generator().manual_seed(5)
    )
    assert mask.shape == (6, 64)
    assert len(set(mask.sum(dim=1).tolist())) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask_prob": 1.5}, "mask_prob"),
        ({"mask_length": 0}, "mask_length"),
        ({"min_masks": -1}, "min_masks"),
        ({"mask_dropout": 1.0}, "mask_dropout"),
        ({"frame_lengths": torch.tensor([10, 11])}, "outside"),
        ({"frame_lengths": torch.tensor([10])}, "shape"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_span_mask((2, 10), **kwargs)
