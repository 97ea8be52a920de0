"""Cosine k-means against a naive spherical k-means loop and on synthetic clusters."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from d2v_speech.ssl.kmeans import cosine_kmeans, kmeans_plus_plus_indices, num_clusters_for


def naive_spherical_kmeans(x: np.ndarray, init: list[int], num_iters: int, tol: float) -> list:
    """Textbook spherical k-means with Python loops (float64), with the documented rules:
    first-max assignment, empty clusters re-seeded at the least similar points, stop on
    unchanged labels or centroid shift <= tol."""
    points = [row / np.linalg.norm(row) for row in x]
    centroids = [points[i].copy() for i in init]

    def assign(cents):
        labels, sims = [], []
        for p in points:
            scores = [float(p @ c) for c in cents]
            best = max(range(len(cents)), key=lambda k: (scores[k], -k))
            labels.append(best)
            sims.append(scores[best])
        return labels, sims

    labels, sims = assign(centroids)
    for _ in range(num_iters):
        sums = [np.zeros_like(points[0]) for _ in centroids]
        counts = [0] * len(centroids)
        for p, label in zip(points, labels):
            sums[label] = sums[label] + p
            counts[label] += 1
        worst_first = sorted(range(len(points)), key=lambda i: sims[i])
        empty = [k for k, c in enumerate(counts) if c == 0]
        for slot, k in enumerate(empty):
            sums[k] = points[worst_first[slot]].copy()
        new_centroids = [s / np.linalg.norm(s) for s in sums]
        shift = sum(float(((a - b) ** 2).sum()) for a, b in zip(new_centroids, centroids))
        centroids = new_centroids
        new_labels, sims = assign(centroids)
        done = new_labels == labels or shift <= tol
        labels = new_labels
        if done:
            break
    return labels


def adjusted_rand_index(a, b) -> float:
    """Hubert & Arabie's ARI from the contingency table."""
    a, b = np.asarray(a), np.asarray(b)
    table = np.array([[np.sum((a == i) & (b == j)) for j in np.unique(b)] for i in np.unique(a)])

    def pairs(values):
        return sum(math.comb(int(v), 2) for v in np.ravel(values))

    index = pairs(table)
    rows, cols, total = pairs(table.sum(1)), pairs(table.sum(0)), math.comb(len(a), 2)
    expected = rows * cols / total
    return (index - expected) / ((rows + cols) / 2 - expected)


def separated_clusters(per_cluster=40, num_clusters=4, dim=16, seed=0):
    """Points around orthogonal directions, with random norms (cosine ignores them)."""
    rng = np.random.default_rng(seed)
    points, truth = [], []
    for k in range(num_clusters):
        direction = np.eye(dim)[k]
        for _ in range(per_cluster):
            noisy = direction + 0.1 * rng.standard_normal(dim)
            points.append(noisy * rng.uniform(0.5, 3.0))
            truth.append(k)
    return torch.tensor(np.array(points), dtype=torch.float32), truth


# on this data 1, 2 and 50 iterations (and tol 1e-2) give different labelings
@pytest.mark.parametrize(("num_iters", "tol"), [(50, 0.0), (1, 0.0), (2, 0.0), (50, 1e-2)])
def test_torch_backend_matches_naive_loop(num_iters, tol):
    x = torch.randn(120, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    init = kmeans_plus_plus_indices(F.normalize(x, dim=-1), 6, seed=3).tolist()
    expected = naive_spherical_kmeans(x.numpy(), init, num_iters, tol)
    labels = cosine_kmeans(x, 6, num_iters=num_iters, seed=3, backend="torch", tol=tol)
    assert labels.tolist() == expected


@pytest.mark.parametrize("backend", ["torch", "faiss", "auto"])
def test_recovers_separated_clusters(backend):
    x, truth = separated_clusters()
    labels = cosine_kmeans(x, 4, num_iters=20, seed=0, backend=backend)
    assert labels.dtype == torch.long and labels.shape == (160,)
    assert adjusted_rand_index(labels.tolist(), truth) == pytest.approx(1.0)


def test_faiss_and_torch_agree_from_the_same_seeds():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(2))
    torch_labels = cosine_kmeans(x, 5, num_iters=50, seed=1, backend="torch")
    faiss_labels = cosine_kmeans(x, 5, num_iters=50, seed=1, backend="faiss")
    assert adjusted_rand_index(torch_labels.tolist(), faiss_labels.tolist()) > 0.95


def test_seeded_and_norm_invariant():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(4))
    first = cosine_kmeans(x, 7, seed=5, backend="torch")
    assert torch.equal(first, cosine_kmeans(x, 7, seed=5, backend="torch"))
    scales = torch.rand(200, 1, generator=torch.Generator().manual_seed(6)) * 10 + 0.1
    torch.testing.assert_close(cosine_kmeans(x * scales, 7, seed=5, backend="torch"), first)
    normalized = F.normalize(x, dim=-1)
    assert not torch.equal(
        kmeans_plus_plus_indices(normalized, 7, seed=5), kmeans_plus_plus_indices(normalized, 7, 6)
    )


def test_kmeans_plus_plus_picks_one_seed_per_separated_cluster():
    x, truth = separated_clusters(per_cluster=100, num_clusters=4)
    for seed in range(5):
        indices = kmeans_plus_plus_indices(F.normalize(x, dim=-1), 4, seed)
        assert sorted(truth[i] for i in indices.tolist()) == [0, 1, 2, 3]


def test_subsampled_seeding_returns_distinct_valid_indices():
    x = F.normalize(torch.randn(1000, 4, generator=torch.Generator().manual_seed(7)), dim=-1)
    indices = kmeans_plus_plus_indices(x, 3, seed=0)  # 1000 > 64 * 3: seeds from a subset
    assert len(set(indices.tolist())) == 3 and int(indices.max()) < 1000


def test_duplicate_points_and_k_equal_n():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    x = torch.stack([a] * 5 + [b] * 5)
    labels = cosine_kmeans(x, 3, backend="torch").tolist()
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]
    distinct = torch.randn(6, 3, generator=torch.Generator().manual_seed(8))
    assert sorted(cosine_kmeans(distinct, 6, backend="torch").tolist()) == list(range(6))


@pytest.mark.parametrize(
    ("frames", "factor", "points", "expected"),
    [(500, 16, None, 31), (100, 16, None, 6), (20, 16, None, 2), (1000, 16, 40, 40), (3, 16, 1, 1)],
)
def test_num_clusters_for(frames, factor, points, expected):
    assert num_clusters_for(frames, factor, num_points=points) == expected


def test_bad_inputs_raise():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="num_clusters"):
        cosine_kmeans(x, 11)
    with pytest.raises(ValueError, match="num_clusters"):
        cosine_kmeans(x, 0)
    with pytest.raises(ValueError, match="backend"):
        cosine_kmeans(x, 2, backend="sklearn")
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        cosine_kmeans(x[0], 2)
    with pytest.raises(ValueError, match="NaN"):
        cosine_kmeans(torch.full((4, 2), float("nan")), 2)
    with pytest.raises(ValueError, match="num_iters"):
        cosine_kmeans(x, 2, num_iters=0)
    with pytest.raises(ValueError, match="cluster_factor"):
        num_clusters_for(100, 0)
