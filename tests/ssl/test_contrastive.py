"""cluster_scaled_contrastive_loss against a naive per-frame loop, in both modes."""

import math

import numpy as np
import pytest
import torch

from d2v_speech.ssl.contrastive import cluster_scaled_contrastive_loss


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def naive_frame_logits(anchor, positive, negatives, same_cluster, sf, temp, official):
    """Per-frame logits following the written rules (float64 loops). Returns a list of lists."""
    num_neg, num_frames, _ = negatives.shape
    any_duplicate = any(
        np.array_equal(negatives[n, m], positive[m])
        for n in range(num_neg)
        for m in range(num_frames)
    )
    rows = []
    for m in range(num_frames):
        row = [cosine(anchor[m], positive[m]) / temp]
        for n in range(num_neg):
            logit = cosine(anchor[m], negatives[n, m]) / temp
            duplicate = np.array_equal(negatives[n, m], positive[m])
            if official:
                if any_duplicate:
                    if duplicate:
                        logit = -math.inf
                    if same_cluster[n, m]:
                        logit = logit * sf
            else:
                if duplicate:
                    logit = -math.inf
                if same_cluster[n, m]:
                    logit = logit + math.log(sf)
            row.append(logit)
        rows.append(row)
    return rows


def naive_loss(rows) -> float:
    total = 0.0
    for row in rows:
        finite_max = max(v for v in row if v != -math.inf)
        log_sum = finite_max + math.log(
            sum(math.exp(v - finite_max) for v in row if v != -math.inf)
        )
        total += log_sum - row[0]
    return total


def make_batch(seed: int, num_neg: int = 5, frames: int = 6, dim: int = 4, duplicates=True):
    rng = np.random.default_rng(seed)
    anchor = rng.standard_normal((frames, dim)).astype(np.float32)
    positive = rng.standard_normal((frames, dim)).astype(np.float32)
    negatives = rng.standard_normal((num_neg, frames, dim)).astype(np.float32)
    if duplicates:
        negatives[1, 2] = positive[2]
        negatives[3, 0] = positive[0]
    same_cluster = rng.random((num_neg, frames)) < 0.5
    return anchor, positive, negatives, same_cluster


def run(batch, official, sf=0.3, temp=0.1):
    anchor, positive, negatives, same_cluster = (torch.from_numpy(np.asarray(a)) for a in batch)
    return cluster_scaled_contrastive_loss(
        anchor, positive, negatives, same_cluster, sf, temp, official_cluster_scaling=official
    )


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("duplicates", [True, False])
def test_loss_matches_naive_loop(official, duplicates):
    batch = make_batch(seed=1, duplicates=duplicates)
    loss, stats = run(batch, official)
    rows = naive_frame_logits(
        *(np.asarray(a, dtype=np.float64) for a in batch[:3]), batch[3], 0.3, 0.1, official
    )
    assert loss.item() == pytest.approx(naive_loss(rows), rel=1e-5)
    expected_correct = sum(int(np.argmax(r) == 0 and np.argmin(r) != 0) for r in rows)
    assert stats["correct"].item() == expected_correct
    assert stats["accuracy"].item() == pytest.approx(expected_correct / len(rows))
    scaled = (not official) or duplicates
    assert stats["cluster_scaling_applied"].item() == float(scaled)


def test_official_mode_without_duplicates_applies_no_scaling():
    batch = make_batch(seed=2, duplicates=False)
    anchor, positive, negatives, _ = batch
    official, _ = run(batch, official=True)
    no_cluster = (anchor, positive, negatives, np.zeros_like(batch[3]))
    unscaled, _ = run(no_cluster, official=False)
    assert official.item() == pytest.approx(unscaled.item(), rel=1e-6)
    fixed, _ = run(batch, official=False)
    assert fixed.item() < unscaled.item()


def softmax_weight_of_first_negative(official: bool) -> tuple[float, float]:
    """Weight of a same-cluster negative with cosine -0.8, scaled vs unscaled."""
    anchor = np.array([[1.0, 0.0]], dtype=np.float32)
    positive = np.array([[0.6, 0.8]], dtype=np.float32)
    negatives = np.array([[[-0.8, 0.6]], [[0.6, 0.8]], [[0.0, 1.0]]], dtype=np.float32)
    same_cluster = np.array([[True], [False], [False]])
    rows_scaled = naive_frame_logits(anchor, positive, negatives, same_cluster, 0.3, 0.1, official)
    rows_plain = naive_frame_logits(
        anchor, positive, negatives, same_cluster * False, 0.3, 0.1, official
    )

    def weight(row):
        exps = [math.exp(v) if v != -math.inf else 0.0 for v in row]
        return exps[1] / sum(exps)

    loss, _ = run((anchor, positive, negatives, same_cluster), official)
    assert loss.item() == pytest.approx(naive_loss(rows_scaled), abs=1e-5)
    return weight(rows_scaled[0]), weight(rows_plain[0])


def test_negative_similarity_official_raises_weight_fixed_lowers_it():
    official_scaled, official_plain = softmax_weight_of_first_negative(official=True)
    fixed_scaled, fixed_plain = softmax_weight_of_first_negative(official=False)
    assert official_scaled > official_plain, "the fork's multiply moves -8 up to -2.4"
    assert fixed_scaled == pytest.approx(0.3 * fixed_plain / (1 - fixed_plain + 0.3 * fixed_plain))
    assert fixed_scaled < fixed_plain


def test_duplicate_negatives_get_zero_weight_and_gradients_are_finite():
    batch = make_batch(seed=3)
    anchor = torch.from_numpy(batch[0]).requires_grad_(True)
    positive, negatives, same_cluster = (torch.from_numpy(np.asarray(a)) for a in batch[1:])
    loss, stats = cluster_scaled_contrastive_loss(anchor, positive, negatives, same_cluster)
    loss.backward()
    assert torch.isfinite(anchor.grad).all()
    assert stats["neg_is_pos_fraction"].item() == pytest.approx(2 / 30)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_computed_in_fp32(dtype):
    batch = make_batch(seed=4)
    tensors = [torch.from_numpy(np.asarray(a)) for a in batch]
    low = [t.to(dtype) for t in tensors[:3]]
    loss, _ = cluster_scaled_contrastive_loss(*low, tensors[3])
    reference, _ = cluster_scaled_contrastive_loss(*(t.float() for t in low), tensors[3])
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_bad_inputs_raise():
    anchor, positive, negatives, same_cluster = (
        torch.from_numpy(np.asarray(a)) for a in make_batch(seed=5)
    )
    with pytest.raises(ValueError, match="anchor and positive"):
        cluster_scaled_contrastive_loss(anchor, positive[:3], negatives, same_cluster)
    with pytest.raises(ValueError, match="negatives must be"):
        cluster_scaled_contrastive_loss(anchor, positive, negatives[:, :3], same_cluster)
    with pytest.raises(ValueError, match="same_cluster"):
        cluster_scaled_contrastive_loss(anchor, positive, negatives, same_cluster.float())
    with pytest.raises(ValueError, match="scale_factor"):
        cluster_scaled_contrastive_loss(anchor, positive, negatives, same_cluster, 0.0)
    with pytest.raises(ValueError, match="logit_temperature"):
        cluster_scaled_contrastive_loss(anchor, positive, negatives, same_cluster, 0.3, 0.0)
