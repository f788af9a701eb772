"""The ``faiss-kmeans`` clusterer: the paper's tool, on the CPU or on GPUs of a matching build.

On a GPU it needs a faiss GPU build made for the same CUDA major version as torch's and
for the GPU's compute capability (docs/gpu.md lists the pairs); the built-in
``torch-kmeans`` needs nothing beyond torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from dcframe.components.builtin_params import FaissKMeansParams
from dcframe.core.clustering import (
    check_device,
    check_k,
    float32_rows,
    import_faiss,
    nearest_centroids,
)
from dcframe.core.interfaces import Clusterer, Clustering, Placement
from dcframe.core.params import Params

# faiss seeds are C ints (a negative one means "seed from the clock").
FAISS_SEED_MODULUS = 2**31


def _last_objective(faiss: ModuleType, clus: Any) -> float:
    """The k-means objective faiss recorded at its last iteration, across faiss versions."""
    stats = getattr(clus, "iteration_stats", None)
    if stats is not None:
        return float(stats.at(stats.size() - 1).obj)
    # Older faiss releases kept only the objective values, in a float vector ``obj``.
    return float(faiss.vector_to_array(clus.obj)[-1])


class FaissKMeans(Clusterer):
    """Euclidean k-means with faiss on an exact flat L2 index, as in the paper (CPU or GPU).

    Every iteration assigns each row to its nearest centroid (exact search, no
    subsampling with the default ``max_points_per_centroid``), then recomputes the
    centroids. Initial centroids are ``k`` distinct random rows (faiss' default
    initialisation), drawn from ``seed``. Recent faiss releases stop before ``iterations``
    once the objective is exactly unchanged from one iteration to the next (converged).

    Empty clusters: after each centroid update faiss re-seeds every empty cluster by
    splitting a non-empty one, chosen at random with probability proportional to its size
    minus one; the two halves get the split centroid scaled by ``1 + 1/1024`` and
    ``1 - 1/1024`` on alternating coordinates (a small symmetric perturbation). Clusters can
    still end up empty in the final assignment.

    The returned ``objective`` is the one faiss records at its last iteration: the sum of
    squared distances of the rows to the centroids that iteration *started from*, i.e.
    before the last centroid update. The returned ``assignments`` are the nearest *final*
    centroids, so the sum of squared distances to the returned ``centroids`` is normally a
    little lower (equal once k-means has converged).
    """

    Params: ClassVar[type[Params]] = FaissKMeansParams
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    params: FaissKMeansParams

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        try:
            faiss = importlib.import_module("faiss")
        except ImportError:
            return ("cpu",)
        # CPU builds of faiss may lack get_num_gpus altogether.
        num_gpus = getattr(faiss, "get_num_gpus", lambda: 0)()
        return cls.devices if num_gpus > 0 else ("cpu",)

    def assign(self, x: np.ndarray, centroids: np.ndarray, device: str) -> Placement:
        """The nearest centroid, as the returned ``assignments`` are."""
        return nearest_centroids(x, centroids, device)

    def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
        check_device(type(self), device)
        x = float32_rows(x)
        num_rows, dim = x.shape
        check_k(self.k, num_rows)
        faiss = import_faiss()

        clus = faiss.Clustering(dim, self.k)
        clus.niter = self.params.iterations
        clus.seed = seed % FAISS_SEED_MODULUS
        clus.max_points_per_centroid = self.params.max_points_per_centroid
        # faiss warns when N < 39 k; small datasets are legitimate here and k <= N is checked.
        clus.min_points_per_centroid = 1
        clus.nredo = 1
        clus.spherical = False
        clus.verbose = self.params.verbose

        if device == "cuda" and faiss.get_num_gpus() > 1:
            # Every GPU of the machine: in a distributed run the main process clusters
            # while the other processes wait, so their GPUs are free for it.
            index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(dim))
        elif device == "cuda":
            # Kept in a local so the GPU resources outlive every use of the index.
            resources = faiss.StandardGpuResources()
            index = faiss.GpuIndexFlatL2(resources, dim)
        else:
            index = faiss.IndexFlatL2(dim)
        clus.train(x, index)

        centroids = faiss.vector_to_array(clus.centroids).reshape(self.k, dim)
        # Reload the index rather than rely on what train() leaves in it (version-dependent).
        index.reset()
        index.add(centroids)
        _, nearest = index.search(x, 1)
        return Clustering(
            assignments=nearest.ravel().astype(np.int64),
            objective=_last_objective(faiss, clus),
            centroids=centroids.astype(np.float32, copy=False),
        )
