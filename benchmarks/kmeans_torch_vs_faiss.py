"""Time torch-kmeans against dcframe's faiss-kmeans (the floor) on the same data, on CPU.

Both clusterers run through dcframe's ``Clusterer.cluster`` with the same seed, so both
include their final assignment pass, and torch-kmeans starts from faiss' initial rows.
The data imitate DeepCluster's clustering input: rows drawn around ``k`` random centres,
then L2-normalised, as after the PCA-whitening + L2 preprocessing.

Example::

    python benchmarks/bench_vs_faiss.py                       # N=50,000, d=256, k=1,000
    python benchmarks/bench_vs_faiss.py --rows 5000 --k 100   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch
from dcframe_torch_kmeans import TorchKMeans, TorchKMeansParams

from dcframe.components.clusterers import FaissKMeans, FaissKMeansParams
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="N, rows to cluster")
    parser.add_argument("--dim", type=int, default=256, help="d, row width")
    parser.add_argument("--k", type=int, default=1_000, help="number of clusters")
    parser.add_argument("--iterations", type=int, default=20, help="Lloyd iterations")
    parser.add_argument(
        "--noise",
        type=float,
        default=2.0,
        help="spread around the centres (the default keeps k-means moving for 20 iterations)",
    )
    parser.add_argument("--batch-rows", type=int, default=65536, help="torch-kmeans batch_rows")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both")
    parser.add_argument("--repeats", type=int, default=1, help="runs per clusterer, best kept")
    parser.add_argument("--seed", type=int, default=0, help="data and clustering seed")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    # torch-kmeans logs its iteration and split counts at debug level; show them.
    logging.basicConfig(format="%(message)s", stream=sys.stdout)
    logging.getLogger("dcframe_torch_kmeans").setLevel(logging.DEBUG)
    x = make_features(args.rows, args.dim, args.k, args.noise, args.seed)
    clusterers: dict[str, Clusterer] = {
        "faiss-kmeans": FaissKMeans(FaissKMeansParams(k=args.k, iterations=args.iterations)),
        "torch-kmeans": TorchKMeans(
            TorchKMeansParams(k=args.k, iterations=args.iterations, batch_rows=args.batch_rows)
        ),
    }
    print(
        f"N={args.rows} d={args.dim} k={args.k} iterations={args.iterations} "
        f"threads: faiss {faiss.omp_get_max_threads()}, torch {torch.get_num_threads()}"
    )
    # Repeats alternate between the clusterers so that a burst of other load on the machine
    # hits both alike; the fastest run of each is the least disturbed one.
    timings = {name: Timing() for name in clusterers}
    for _ in range(args.repeats):
        for name, clusterer in clusterers.items():
            timings[name].record(lambda c=clusterer: c.cluster(x, args.seed, "cpu"))
    for name, timing in timings.items():
        print(f"{name:>13}: {timing.summary()}")

    faiss_timing, torch_timing = timings["faiss-kmeans"], timings["torch-kmeans"]
    faiss_result, torch_result = faiss_timing.results[-1], torch_timing.results[-1]
    ratio = torch_timing.wall[torch_timing.best] / faiss_timing.wall[faiss_timing.best]
    gap = (torch_result.objective - faiss_result.objective) / faiss_result.objective
    print(f"time ratio torch/faiss:        {ratio:.3f}")
    print(f"objective (torch-faiss)/faiss: {gap:+.2e}")
    agreement = nmi(torch_result.assignments, faiss_result.assignments)
    print(f"NMI(torch, faiss):             {agreement:.6f}")


if __name__ == "__main__":
    main()
