"""Time the cosine k-means backends on 1 CPU thread at data2vec-aqc sizes.

Data imitate what the aqc objective clusters: projected Gumbel codes (2 groups x 320 codes,
Zipf-distributed usage, so many exact duplicates) plus Gaussian data as a harder case. Each setting
reports the median CPU time (process time, 1 thread) over repeats, the iterations used (torch)
and the mean cosine between each point and its cluster's normalised mean (higher is tighter).

The fork's own clusterer, ``fast_pytorch_kmeans`` (max_iter=100, tol=1e-4), is timed too when it is
importable (``pip install fast-pytorch-kmeans``, or put it on PYTHONPATH); it is not a dependency.

    python benchmarks/kmeans_backends.py [--repeats 3] [--sizes tiny base]

Writes ``benchmarks/results/kmeans_backends.{json,md}``.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import faiss
import torch
import torch.nn.functional as F

from d2v_speech.ssl import kmeans as kmeans_module
from d2v_speech.ssl.kmeans import cosine_kmeans

RESULTS = Path(__file__).resolve().parent / "results"

# (name, number of points = 2 views x B x masked frames, K from num_clusters_for(T))
SIZES = {
    "tiny": (2 * 8 * 100, 12),
    "base_k31": (2 * 60 * 250, 31),
    "base_k62": (2 * 60 * 250, 62),
}
DIM = 256


def quantized_like_points(num_points: int, seed: int) -> torch.Tensor:
    """(N, 256) projected product-codebook vectors with Zipf code usage."""
    generator = torch.Generator().manual_seed(seed)
    codebooks = torch.rand(2, 320, DIM // 2, generator=generator)
    usage = 1.0 / torch.arange(1, 321, dtype=torch.float64)
    codes = torch.multinomial(
        usage.expand(2, -1), num_points, replacement=True, generator=generator
    )
    vectors = torch.cat([codebooks[g, codes[g]] for g in range(2)], dim=-1)
    projection = torch.randn(DIM, DIM, generator=generator) / DIM**0.5
    return vectors @ projection


def gaussian_points(num_points: int, seed: int) -> torch.Tensor:
    return torch.randn(num_points, DIM, generator=torch.Generator().manual_seed(seed))


def mean_cosine_to_cluster(x: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> float:
    points = F.normalize(x.double(), dim=-1)
    sums = torch.zeros(num_clusters, DIM, dtype=torch.float64).index_add_(0, labels, points)
    centroids = F.normalize(sums, dim=-1)
    return float((points * centroids[labels]).sum(-1).mean())


def count_torch_iterations(x, num_clusters, num_iters, tol) -> int:
    """Iterations the torch backend ran, counted by wrapping its centroid update."""
    calls = 0
    original = kmeans_module._update_centroids

    def counting(*args):
        nonlocal calls
        calls += 1
        return original(*args)

    kmeans_module._update_centroids = counting
    try:
        cosine_kmeans(x, num_clusters, num_iters=num_iters, backend="torch", tol=tol)
    finally:
        kmeans_module._update_centroids = original
    return calls


def fork_clusterer():
    """fast_pytorch_kmeans.KMeans as the fork builds it, or None when not installed."""
    try:
        from fast_pytorch_kmeans import KMeans
    except ImportError:
        return None
    return lambda x, k: KMeans(n_clusters=k, mode="cosine", verbose=0).fit_predict(x)


def settings():
    yield "torch (num_iters=20)", lambda x, k: cosine_kmeans(x, k, 20, backend="torch"), (20, 0.0)
    yield "faiss (niter=20)", lambda x, k: cosine_kmeans(x, k, 20, backend="faiss"), None
    yield (
        "torch, fork setting (100 iters, tol 1e-4)",
        lambda x, k: cosine_kmeans(x, k, 100, backend="torch", tol=1e-4),
        (100, 1e-4),
    )
    fork = fork_clusterer()
    if fork is not None:
        yield "fast_pytorch_kmeans (fork: 100 iters, tol 1e-4)", fork, None


def time_call(function, x, k, repeats: int) -> tuple[float, torch.Tensor]:
    times, labels = [], None
    for _ in range(repeats):
        # CPU time of this process: robust to other jobs sharing the machine (1 thread anyway)
        start = time.process_time()
        labels = function(x, k)
        times.append(time.process_time() - start)
    return statistics.median(times), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)

    rows = []
    for size in args.sizes:
        num_points, num_clusters = SIZES[size]
        for data_name, make in (
            ("quantized-like", quantized_like_points),
            ("gaussian", gaussian_points),
        ):
            x = make(num_points, seed=0)
            for name, function, torch_params in settings():
                seconds, labels = time_call(function, x, num_clusters, args.repeats)
                iterations = (
                    count_torch_iterations(x, num_clusters, *torch_params) if torch_params else None
                )
                rows.append(
                    {
                        "size": size,
                        "points": num_points,
                        "dim": DIM,
                        "clusters": num_clusters,
                        "data": data_name,
                        "setting": name,
                        "seconds_median": round(seconds, 4),
                        "torch_iterations": iterations,
                        "mean_cosine_to_cluster": round(
                            mean_cosine_to_cluster(x, labels.cpu().long(), num_clusters), 4
                        ),
                    }
                )
                print(rows[-1], flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "threads": 1,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    (RESULTS / "kmeans_backends.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2)
    )
    lines = [
        "# Cosine k-means backends (1 CPU thread, median CPU seconds of "
        f"{args.repeats}; torch {meta['torch']}, faiss {meta['faiss']})",
        "",
        "| size | N x C | K | data | setting | seconds | torch iters | mean cos to cluster |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['points']} x {r['dim']} | {r['clusters']} | {r['data']} | "
            f"{r['setting']} | {r['seconds_median']:.4f} | {r['torch_iterations'] or '-'} | "
            f"{r['mean_cosine_to_cluster']:.4f} |"
        )
    (RESULTS / "kmeans_backends.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
