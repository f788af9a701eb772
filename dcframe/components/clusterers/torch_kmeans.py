"""The ``torch-kmeans`` clusterer: the k-means of :mod:`.lloyd` behind the clusterer contract.

It needs nothing beyond torch, so it clusters on any GPU torch itself runs on: the default
of the GPU recipes, whatever faiss build is (or is not) installed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dcframe.components.builtin_params import TorchKMeansParams
from dcframe.components.clusterers.faiss_kmeans import FAISS_SEED_MODULUS
from dcframe.components.clusterers.lloyd import KMeansRun, kmeans_plus_plus_init, lloyd, random_init
from dcframe.core.clustering import check_device, check_k, float32_rows, nearest_centroids
from dcframe.core.distributed import World
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Clusterer, Clustering, Placement
from dcframe.core.params import Params

logger = logging.getLogger(__name__)


def generator_for_seed(seed: int) -> torch.Generator:
    """The CPU generator of a run with this dcframe seed, chosen to start where faiss does.

    faiss-kmeans picks its initial rows with a Fisher-Yates shuffle driven by a 32-bit
    Mersenne Twister seeded with ``seed % 2**31 + 1`` and reduced modulo the remaining
    length at each step. ``torch.randperm`` on CPU runs that very algorithm on the same
    generator for fewer than 2**32 / 20 (about 214 million) rows, so seeding it the same
    way makes ``init="random"`` start from exactly faiss-kmeans' ``k`` rows for the same
    seed. The two runs then differ only by float rounding (near-ties) and by the donors
    drawn when splitting empty clusters.
    """
    return torch.Generator().manual_seed(seed % FAISS_SEED_MODULUS + 1)


class TorchKMeans(Clusterer):
    """Euclidean or spherical k-means in plain torch, on CPU, CUDA or Apple MPS.

    Lloyd's algorithm, one run, exact nearest-centroid search by blocks of ``batch_rows``
    rows. Initial centroids are ``k`` distinct random rows (as faiss and the paper do) or
    k-means++ seeding. Empty clusters are re-seeded after each centroid update by splitting
    a populated cluster exactly as faiss does (donor drawn with probability proportional to
    its size minus one, copies scaled by ``1 +/- 1/1024`` on alternating coordinates); see
    :func:`~dcframe.components.clusterers.lloyd.split_empty_clusters`. The loop stops before
    ``iterations`` once the centroids stop changing. The returned ``assignments`` are the
    nearest *final* centroids; clusters can still be empty in them.

    ``metric="spherical"`` L2-normalises the rows, the initial centroids and the centroids
    after every update. For unit vectors the squared distance is ``2 - 2 cos``, so the
    nearest centroid is the one of highest cosine similarity.

    The returned ``objective`` has faiss-kmeans' meaning: the sum of squared Euclidean
    distances of the rows to their nearest centroid at the *last iteration's assignment
    step*, i.e. to the centroids that iteration started from, before its centroid update.
    Distances are float32, summed in float64 (float32 on MPS). In spherical mode they are
    distances between the normalised rows and centroids, so the objective is
    ``sum(2 - 2 cos)``.

    In a distributed run (``torchrun``) it clusters the rows where they are
    (:meth:`cluster_shards`): every process keeps its share, and each iteration all-reduces
    the per-cluster sums and counts (a ``k x d`` matrix), so no process holds all the rows.

    On CPU the same seed gives the same result on the same machine with the same number of
    threads (BLAS may round differently with another thread count). The initial rows and
    split donors are drawn from a CPU generator, so a seed picks the same ones on every
    device, but CUDA's ``index_add_`` sums in a varying order, so GPU runs may differ in
    the last bits and drift apart from there.
    """

    Params: ClassVar[type[Params]] = TorchKMeansParams
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda", "mps")
    distributed: ClassVar[bool] = True
    params: TorchKMeansParams

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        available = ["cpu"]
        if torch.cuda.is_available():
            available.append("cuda")
        if torch.backends.mps.is_available():
            available.append("mps")
        return tuple(available)

    def assign(self, x: np.ndarray, centroids: np.ndarray, device: str) -> Placement:
        """The nearest centroid (of the unit-norm row, for the spherical metric), as the
        returned ``assignments`` are."""
        rows = float32_rows(x)
        if self.params.metric == "spherical":
            rows = F.normalize(torch.from_numpy(rows), dim=1).numpy()
        return nearest_centroids(rows, centroids, device)

    def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
        check_device(type(self), device)
        rows = float32_rows(x)
        check_k(self.k, rows.shape[0])
        if not np.isfinite(rows).all():
            # faiss refuses such input too; NaN would silently poison every centroid.
            raise ValueError("cannot cluster rows containing NaN or infinite values")
        generator = generator_for_seed(seed)
        with _float32(device):
            data = self._prepared(rows, device)
            init = kmeans_plus_plus_init if self.params.init == "k-means++" else random_init
            run = self._lloyd(data, init(data, self.k, generator), generator)
        return _clustering(run)

    def cluster_shards(self, x: np.ndarray, seed: int, device: str, world: World) -> Clustering:
        """Distributed k-means: each process keeps its rows; per iteration the per-cluster
        sums, counts and objective are all-reduced, and every process splits the same empty
        clusters with the same generator, so all processes hold the same centroids.

        The initial rows are those :meth:`cluster` would pick on all the rows together (the
        rows of every process, in rank order), so the result equals the one-process result
        up to float summation order.
        """
        check_device(type(self), device)
        rows = float32_rows(x)
        num_rows = int(world.sum(rows.shape[0])[0])
        check_k(self.k, num_rows)
        if world.any(not np.isfinite(rows).all()):
            raise ValueError("cannot cluster rows containing NaN or infinite values")
        if self.params.init != "random":
            raise UserError(
                "clusterer.init: 'k-means++' is not available when clustering distributed; "
                "use init = 'random' (the paper's)"
            )
        generator = generator_for_seed(seed)
        reduce = functools.partial(_summed, world)
        with _float32(device):
            data = self._prepared(rows, device)
            # random_init on the rows of all processes: each gives the chosen rows it holds.
            offset = world.offset(rows.shape[0])
            chosen = torch.randperm(num_rows, generator=generator)[: self.k] - offset
            mine = (chosen >= 0) & (chosen < rows.shape[0])
            initial = data.new_zeros(self.k, data.shape[1])
            initial[mine.to(data.device)] = data[chosen[mine].to(data.device)]
            run = self._lloyd(data, reduce(initial), generator, total=reduce)
        return _clustering(run)

    def _prepared(self, rows: np.ndarray, device: str) -> torch.Tensor:
        """The rows on ``device``, unit-norm for the spherical metric."""
        data = torch.from_numpy(rows).to(device)
        return F.normalize(data, dim=1) if self.params.metric == "spherical" else data

    def _lloyd(
        self,
        data: torch.Tensor,
        initial: torch.Tensor,
        generator: torch.Generator,
        total: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> KMeansRun:
        run = lloyd(
            data,
            initial,
            iterations=self.params.iterations,
            generator=generator,
            batch_rows=self.params.batch_rows,
            spherical=self.params.metric == "spherical",
            total=total,
        )
        logger.debug(
            "torch-kmeans: %d iterations, %d empty-cluster splits, objective %.6g",
            run.iterations,
            sum(run.splits),
            run.objective,
        )
        return run


@contextlib.contextmanager
def _float32(device: str) -> Iterator[None]:
    """Full float32 inside, whatever ``run.amp`` or the process gives the network: autocast
    off, and float32 matrix products in full precision (not TF32 or bf16 passes), since
    rounded distances would move rows between nearly tied centroids."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(torch.device(device).type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(precision)


def _clustering(run: KMeansRun) -> Clustering:
    return Clustering(
        assignments=run.assignments.cpu().numpy(),
        objective=run.objective,
        centroids=run.centroids.cpu().numpy(),
    )


def _summed(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over ``world``'s processes, back on its own device."""
    return world.sum_tensor(tensor.to(world.device)).to(tensor.device)
