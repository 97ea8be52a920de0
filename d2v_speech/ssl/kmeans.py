"""Cosine (spherical) k-means for data2vec-aqc's cluster-aware negatives.

Both backends start from the same seeded k-means++ centroids (:func:`kmeans_plus_plus_indices`,
computed on the input's device) and iterate spherical Lloyd steps: assign each point to the centroid
with the largest dot product, move each centroid to the normalised sum of its points.

* ``"torch"``: runs on the input's device (CPU or GPU, no host copy). An empty cluster is
  re-seeded at the point least similar to its current centroid. Stops after ``num_iters`` updates,
  when the assignment no longer changes, or when the summed squared centroid shift is <= ``tol``.
* ``"faiss"``: ``faiss.Kmeans(spherical=True)`` on float32 numpy (on the GPU when faiss has GPU
  support and the input is on CUDA). It uses all points (no subsampling), runs exactly
  ``num_iters`` iterations (faiss has no tolerance) and splits large clusters to fill empty ones.

``"auto"`` picks the torch backend. Median CPU seconds on 1 thread, 20 iterations, on a shared
2-core machine (``benchmarks/results/kmeans_backends.md``): at the BASE size (30k x 256) torch took
0.32-0.43 s vs faiss 0.43-0.48 s at K=31 and 0.48-0.50 s vs 0.51-0.53 s at K=62, with identical
clustering quality; at the tiny demo size (1.6k x 256, K=12) faiss is 2-5 ms faster (11-15 ms vs
13-20 ms), which is negligible next to a training step. On CUDA, torch also avoids a host copy.

Each step the fork builds ``fast_pytorch_kmeans.KMeans(mode="cosine")`` (max_iter=100, tol=1e-4,
random init); ``cosine_kmeans(x, k, num_iters=100, tol=1e-4, backend="torch")`` is the closest.
That clusterer took 1.3-2.9 s per call at the BASE size, 2.5-6x the torch default above.
"""

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "faiss", "torch")
SEEDING_CANDIDATES_PER_CLUSTER = 64


def num_clusters_for(
    num_frames: int, cluster_factor: int = 16, num_points: int | None = None
) -> int:
    """K = max(2, num_frames // cluster_factor), the fork's rule (num_frames = padded T).

    When ``num_points`` (the number of vectors to cluster) is given, K is clamped to it, so that
    short masked regions never ask for more clusters than points.
    """
    if num_frames < 1 or cluster_factor < 1:
        raise ValueError(
            f"num_frames and cluster_factor must be >= 1, got {num_frames}, {cluster_factor}"
        )
    clusters = max(2, num_frames // cluster_factor)
    if num_points is not None:
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        clusters = min(clusters, num_points)
    return clusters


def kmeans_plus_plus_indices(points: torch.Tensor, num_clusters: int, seed: int) -> torch.Tensor:
    """(K,) distinct indices of k-means++ seeds for unit-norm ``points`` (N, C), on their device.

    Each new seed is drawn with probability proportional to its squared chord distance
    ``2 - 2 cos`` to the nearest seed so far. Seeds are drawn from a random subset of at most
    ``SEEDING_CANDIDATES_PER_CLUSTER * K`` points, which keeps seeding cheap next to the Lloyd
    iterations. Reproducible per ``seed`` and device (a generator on the points' device).
    """
    num_points = points.shape[0]
    generator = torch.Generator(device=points.device).manual_seed(seed)
    candidates = torch.arange(num_points, device=points.device)
    if num_points > SEEDING_CANDIDATES_PER_CLUSTER * num_clusters:
        permutation = torch.randperm(num_points, generator=generator, device=points.device)
        candidates = permutation[: SEEDING_CANDIDATES_PER_CLUSTER * num_clusters]
    pool = points[candidates]
    chosen = torch.zeros(pool.shape[0], dtype=torch.bool, device=points.device)
    first = torch.randint(pool.shape[0], (1,), generator=generator, device=points.device)
    picks = [first]
    chosen[first] = True
    nearest = (2 - 2 * (pool @ pool[first].T).squeeze(1)).clamp_min(0)
    for _ in range(num_clusters - 1):
        # the floor keeps the draw defined and duplicate-free when only copies of seeds remain
        weights = torch.where(chosen, 0.0, nearest + 1e-12)
        pick = torch.multinomial(weights, 1, generator=generator)
        picks.append(pick)
        chosen[pick] = True
        nearest = torch.minimum(nearest, (2 - 2 * (pool @ pool[pick].T).squeeze(1)).clamp_min(0))
    return candidates[torch.cat(picks)]


def cosine_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    num_iters: int = 20,
    seed: int = 0,
    backend: str = "auto",
    tol: float = 0.0,
) -> torch.Tensor:
    """Cluster the directions of ``x`` into ``num_clusters`` groups.

    Arguments
    ---------
    x : torch.Tensor
        (N, C) float points; they are L2-normalised here (zero rows stay zero).
    num_clusters : int
        K, 1 <= K <= N (a larger K raises ValueError; clamp it with :func:`num_clusters_for`).
    num_iters : int
        Maximum number of centroid updates.
    seed : int
        Seeds the k-means++ initialisation (shared by both backends).
    backend : str
        ``"auto"``, ``"torch"`` or ``"faiss"``.
    tol : float
        torch backend only: stop once the summed squared centroid shift is <= tol.

    Returns
    -------
    torch.Tensor
        (N,) long cluster labels on ``x``'s device.
    """
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating (N, C) tensor, got {x.dtype} {tuple(x.shape)}")
    num_points = x.shape[0]
    if not 1 <= num_clusters <= num_points:
        raise ValueError(f"num_clusters must be in [1, N={num_points}], got {num_clusters}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf")
    # fp64 input stays fp64 (exact comparisons in tests); anything else is clustered in fp32
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # called inside a bf16/fp16 autocast region by the objective; distances need full precision
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _cluster(
            F.normalize(x.detach().to(dtype), dim=-1), num_clusters, num_iters, seed, backend, tol
        )


def _cluster(points, num_clusters, num_iters, seed, backend, tol):
    init = kmeans_plus_plus_indices(points, num_clusters, seed)
    if backend == "faiss":
        return _faiss_kmeans(points, points[init], num_iters)
    return _torch_kmeans(points, points[init], num_iters, tol)


def _torch_kmeans(
    points: torch.Tensor, centroids: torch.Tensor, num_iters: int, tol: float
) -> torch.Tensor:
    """Spherical Lloyd iterations on the points' device. points: (N, C), centroids: (K, C)."""
    num_clusters = centroids.shape[0]
    similarity, labels = (points @ centroids.T).max(dim=-1)
    for _ in range(num_iters):
        new_centroids = _update_centroids(points, labels, similarity, num_clusters)
        shift = (new_centroids - centroids).pow(2).sum() if tol > 0 else None
        centroids = new_centroids
        similarity, new_labels = (points @ centroids.T).max(dim=-1)
        # with tol = 0 the shift test fires only on (numerically) unchanged centroids, whose
        # labels are unchanged too: the label test alone decides, sparing a host sync on GPU
        converged = bool(torch.equal(new_labels, labels)) or (
            shift is not None and shift.item() <= tol
        )
        labels = new_labels
        if converged:
            break
    return labels


def _update_centroids(
    points: torch.Tensor, labels: torch.Tensor, similarity: torch.Tensor, num_clusters: int
) -> torch.Tensor:
    """(K, C) normalised per-cluster sums; empty clusters move to the worst-fitting points."""
    sums = torch.zeros(num_clusters, points.shape[1], dtype=points.dtype, device=points.device)
    sums.index_add_(0, labels, points)
    counts = torch.bincount(labels, minlength=num_clusters)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        # the points farthest from their own centroid are the ones the model explains worst
        worst = torch.argsort(similarity, stable=True)[: empty.numel()]
        sums[empty] = points[worst]
    return F.normalize(sums, dim=-1)


def _faiss_kmeans(points: torch.Tensor, centroids: torch.Tensor, num_iters: int) -> torch.Tensor:
    """faiss spherical k-means from the given centroids; labels = nearest final centroid."""
    import faiss  # imported lazily: the torch backend must not need it

    points_np = points.float().cpu().numpy()
    use_gpu = points.is_cuda and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    kmeans = faiss.Kmeans(
        points_np.shape[1],
        centroids.shape[0],
        niter=num_iters,
        spherical=True,
        gpu=use_gpu,
        # keep every point (no subsampling) and silence faiss' "too few points" warning
        max_points_per_centroid=points_np.shape[0],
        min_points_per_centroid=1,
    )
    kmeans.train(points_np, init_centroids=centroids.float().cpu().numpy())
    _, labels = kmeans.index.search(points_np, 1)
    return torch.from_numpy(labels[:, 0].astype("int64")).to(points.device)
