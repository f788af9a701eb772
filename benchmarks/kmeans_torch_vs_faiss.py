"""Time torch-kmeans against faiss-kmeans (the floor) on the same data, on the CPU.

Both clusterers run through dcframe's ``Clusterer.cluster`` with the same seed, so both
include their final assignment pass, and torch-kmeans starts from faiss' initial rows.
The data imitate DeepCluster's clustering input: rows drawn around ``k`` random centres,
then L2-normalised, as after the PCA-whitening + L2 preprocessing.

Prints one table row per (N, d, k): the best wall time of each, their ratio, the ratio
of the objectives, and how far the two results agree (NMI of the assignments, the share
of rows given the same cluster id, the largest centroid difference).

Example::

    python benchmarks/kmeans_torch_vs_faiss.py                   # the grid of docs/gpu.md
    python benchmarks/kmeans_torch_vs_faiss.py --size 5000,64,100  # one quick look
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch

from dcframe.components.builtin_params import FaissKMeansParams, TorchKMeansParams
from dcframe.components.clusterers import FaissKMeans, TorchKMeans
from dcframe.engine.metrics import nmi
from dcframe.plugin import Clusterer, Clustering


def make_features(rows: int, dim: int, centres: int, noise: float, seed: int) -> np.ndarray:
    """Unit-norm float32 rows scattered around ``centres`` random directions."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)) / np.sqrt(dim)
    labels = rng.integers(0, centres, size=rows)
    x = means[labels] + noise * rng.standard_normal((rows, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@dataclass
class Timing:
    """Wall and process CPU seconds of every run of one clusterer, and its last result."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    results: list[Clustering] = field(default_factory=list)

    def record(self, run: Callable[[], Clustering]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.results.append(run())
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    @property
    def best(self) -> int:
        """Index of the fastest run: the one least disturbed by other load on the machine."""
        return self.wall.index(min(self.wall))

    def summary(self) -> str:
        return (
            f"best {self.wall[self.best]:7.2f} s wall of {len(self.wall)} "
            f"(CPU {self.cpu[self.best]:.2f} s), objective {self.results[-1].objective:.6g}"
        )


# (N, d, k): points of N = 50,000-200,000, d = 128-256, k = 100-10,000 that fit in about
# five minutes on two idle cores (each costs N x k x d x 2 x 21 flops per clusterer). The
# largest corner, --size 200000,256,10000, takes about eleven minutes more.
GRID = (
    (50_000, 128, 100),
    (50_000, 256, 1_000),
    (50_000, 128, 10_000),
    (100_000, 256, 1_000),
    (200_000, 128, 100),
    (200_000, 256, 1_000),
    (100_000, 128, 10_000),
)


def compare(size: tuple[int, int, int], args: argparse.Namespace) -> str:
    """One table row: both clusterers on the same rows, repeats alternating between them."""
    rows, dim, k = size
    x = make_features(rows, dim, k, args.noise, args.seed)
    clusterers: dict[str, Clusterer] = {
        "faiss": FaissKMeans(FaissKMeansParams(k=k, iterations=args.iterations)),
        "torch": TorchKMeans(TorchKMeansParams(k=k, iterations=args.iterations)),
    }
    # Alternating, so that a burst of other load on the machine hits both alike; the
    # fastest run of each is the least disturbed one.
    timings = {name: Timing() for name in clusterers}
    for _ in range(args.repeats):
        for name, clusterer in clusterers.items():
            timings[name].record(lambda c=clusterer: c.cluster(x, args.seed, "cpu"))
    faiss_run, torch_run = timings["faiss"], timings["torch"]
    ours, theirs = torch_run.results[-1], faiss_run.results[-1]
    faiss_s, torch_s = faiss_run.wall[faiss_run.best], torch_run.wall[torch_run.best]
    same = float(np.mean(ours.assignments == theirs.assignments))
    drift = float(np.abs(ours.centroids - theirs.centroids).max())
    return (
        f"| {rows:,} | {dim} | {k:,} | {faiss_s:.2f} | {torch_s:.2f} | {torch_s / faiss_s:.2f} "
        f"| {ours.objective / theirs.objective:.6f} "
        f"| {nmi(ours.assignments, theirs.assignments):.4f} | {same:.4f} | {drift:.1e} |"
    )


def _size(text: str) -> tuple[int, int, int]:
    rows, dim, k = (int(part) for part in text.split(","))
    return rows, dim, k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", type=_size, action="append", help="N,d,k to measure (repeatable); default GRID"
    )
    parser.add_argument("--iterations", type=int, default=20, help="Lloyd iterations")
    parser.add_argument(
        "--noise",
        type=float,
        default=2.0,
        help="spread around the centres (the default keeps k-means moving for 20 iterations)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both")
    parser.add_argument("--repeats", type=int, default=1, help="runs per clusterer, best kept")
    parser.add_argument("--seed", type=int, default=0, help="data and clustering seed")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(
        f"{args.iterations} iterations, best of {args.repeats}; threads: faiss "
        f"{faiss.omp_get_max_threads()}, torch {torch.get_num_threads()}; same seed, so "
        "the same initial rows\n"
    )
    print(
        "| N | d | k | faiss s | torch s | time torch/faiss | objective torch/faiss "
        "| NMI(torch, faiss) | same id | max centroid diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.size or GRID:
        print(compare(size, args), flush=True)


if __name__ == "__main__":
    main()
