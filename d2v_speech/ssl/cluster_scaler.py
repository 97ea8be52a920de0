"""Cluster scaler part of data2vec-aqc: down-weight negatives of their positive's k-means cluster.

Each step both views' projected codes (2 x B x M points) are clustered by cosine k-means into
``K = max(2, frames // cluster_factor)`` clusters (``frames``: the padded frame count T, as the
fork, or the masked count M per utterance); a negative sharing its positive's cluster gets its
softmax weight multiplied by ``scale_factor`` in the contrastive loss::

    cluster_scaler: !new:d2v_speech.ssl.cluster_scaler.ClusterScaler
        kmeans: !new:d2v_speech.ssl.cluster_scaler.CosineKMeans
            backend: auto                 # or torch, faiss
            num_iters: 20
        cluster_factor: 16
        cluster_size_from: padded_frames
        scale_factor: 0.3
        official_cluster_scaling: False   # True: the fork's conditional, sign-dependent scaling

Example
-------
>>> import torch
>>> scaler = ClusterScaler(kmeans=CosineKMeans(backend="torch"), cluster_factor=2)
>>> q = torch.randn(2, 4, 8)
>>> index = torch.randint(0, 4, (3, 2, 4))
>>> same_clean, same_aug = scaler(q, q + 0.1, index, index, padded_frames=6)
>>> same_clean.shape, same_clean.dtype
(torch.Size([3, 2, 4]), torch.bool)
"""

from __future__ import annotations

import torch

from d2v_speech.ssl.kmeans import BACKENDS, cosine_kmeans, num_clusters_for

__all__ = ["CLUSTER_SIZE_SOURCES", "ClusterScaler", "CosineKMeans", "same_cluster"]

CLUSTER_SIZE_SOURCES = ("padded_frames", "masked_frames")


class CosineKMeans:
    """The k-means backend part: :func:`~d2v_speech.ssl.kmeans.cosine_kmeans` with its settings.

    Arguments
    ---------
    backend : str
        "auto" (torch), "torch" or "faiss".
    num_iters : int
        Lloyd iterations.
    tol : float
        torch backend: stop once the summed squared centroid shift is <= tol.
    """

    def __init__(self, backend: str = "auto", num_iters: int = 20, tol: float = 0.0) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if num_iters < 1:
            raise ValueError(f"num_iters must be >= 1, got {num_iters}")
        self.backend = backend
        self.num_iters = int(num_iters)
        self.tol = float(tol)

    def __call__(self, points: torch.Tensor, num_clusters: int, seed: int) -> torch.Tensor:
        """points (N, C) -> (N,) long cluster labels, reproducible per ``seed``."""
        return cosine_kmeans(
            points,
            num_clusters,
            num_iters=self.num_iters,
            seed=seed,
            backend=self.backend,
            tol=self.tol,
        )

    def __repr__(self) -> str:
        return f"CosineKMeans(backend={self.backend!r}, num_iters={self.num_iters}, tol={self.tol})"


class ClusterScaler:
    """Which negatives share their positive's cluster, and how much they are down-weighted.

    Arguments
    ---------
    kmeans : CosineKMeans | None
        The clustering backend; None: ``CosineKMeans()``.
    cluster_factor : int
        K = max(2, frames // cluster_factor) clusters per step (fork: 16).
    cluster_size_from : str
        "padded_frames" (the fork: frames = the batch's padded frame count T) or
        "masked_frames" (frames = the masked count M per utterance, as in ccc-wav2vec 2.0).
    scale_factor : float
        Down-weighting of same-cluster negatives, in (0, 1] (fork: 0.3).
    official_cluster_scaling : bool
        False: a same-cluster negative's exp is always multiplied by ``scale_factor``. True:
        the fork, which multiplies the logits (raising negatives of negative similarity) and
        only in steps where some negative equals its positive.
    """

    def __init__(
        self,
        kmeans: CosineKMeans | None = None,
        cluster_factor: int = 16,
        cluster_size_from: str = "padded_frames",
        scale_factor: float = 0.3,
        official_cluster_scaling: bool = False,
    ) -> None:
        if cluster_size_from not in CLUSTER_SIZE_SOURCES:
            raise ValueError(
                f"cluster_size_from must be one of {CLUSTER_SIZE_SOURCES}, "
                f"got {cluster_size_from!r}"
            )
        if cluster_factor < 1:
            raise ValueError(f"cluster_factor must be >= 1, got {cluster_factor}")
        if not 0 < scale_factor <= 1:
            raise ValueError(f"scale_factor must be in (0, 1], got {scale_factor}")
        self.kmeans = CosineKMeans() if kmeans is None else kmeans
        self.cluster_factor = int(cluster_factor)
        self.cluster_size_from = cluster_size_from
        self.scale_factor = float(scale_factor)
        self.official_cluster_scaling = bool(official_cluster_scaling)

    def __call__(
        self,
        q_clean: torch.Tensor,
        q_aug: torch.Tensor,
        index_clean: torch.Tensor,
        index_aug: torch.Tensor,
        padded_frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k-means over both views' codes q (B, M, C) -> (N, B, M) bool per view: True where
        negative ``index[n, b, m]`` shares frame (b, m)'s cluster."""
        batch_size, per_row, dim = q_clean.shape
        points = torch.cat([q_clean.reshape(-1, dim), q_aug.reshape(-1, dim)]).detach()
        frames = padded_frames if self.cluster_size_from == "padded_frames" else per_row
        num_clusters = num_clusters_for(frames, self.cluster_factor, num_points=points.shape[0])
        # drawn from the global generator, whose state the checkpoints save (exact resume)
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        labels = self.kmeans(points, num_clusters, seed)
        labels_clean, labels_aug = labels.view(2, batch_size, per_row).unbind(0)
        return same_cluster(labels_clean, index_clean), same_cluster(labels_aug, index_aug)

    def __repr__(self) -> str:
        return (
            f"ClusterScaler(kmeans={self.kmeans!r}, cluster_factor={self.cluster_factor}, "
            f"cluster_size_from={self.cluster_size_from!r}, scale_factor={self.scale_factor}, "
            f"official_cluster_scaling={self.official_cluster_scaling})"
        )


def same_cluster(labels: torch.Tensor, neg_index: torch.Tensor) -> torch.Tensor:
    """labels (B, M), neg_index (N, B, M) -> (N, B, M) bool: label of the negative == own label."""
    expanded = labels.unsqueeze(0).expand_as(neg_index)
    return torch.gather(expanded, 2, neg_index) == expanded
