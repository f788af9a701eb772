"""The ``torch-kmeans`` dcframe clusterer: the k-means of :mod:`.kmeans` behind the contract."""

from __future__ import annotations

import functools
import logging
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from dcframe.plugin import (
    Clusterer,
    ClustererParams,
    Clustering,
    Params,
    UserError,
    World,
    check_device,
    check_k,
    float32_rows,
)
from dcframe_torch_kmeans.kmeans import kmeans_plus_plus_init, lloyd, random_init

logger = logging.getLogger(__name__)

# dcframe's faiss-kmeans hands faiss ``seed % 2**31`` (a C int); the same reduction here
# keeps the two clusterers seed-compatible (see generator_for_seed).
_FAISS_SEED_MODULUS = 2**31


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
    return torch.Generator().manual_seed(seed % _FAISS_SEED_MODULUS + 1)


class TorchKMeansParams(ClustererParams):
    """Parameters of :class:`TorchKMeans`."""

    iterations: int = Field(20, ge=1, description="Maximum Lloyd iterations, one run (paper: 20).")
    metric: Literal["euclidean", "spherical"] = Field(
        "euclidean",
        description=(
            "euclidean (paper) or spherical: rows and centroids L2-normalised, rows assigned "
            "to the centroid of highest cosine similarity."
        ),
    )
    init: Literal["random", "k-means++"] = Field(
        "random", description="Initial centroids: k distinct random rows (paper) or k-means++."
    )
    batch_rows: int = Field(
        65536,
        ge=1,
        description=(
            "Rows per distance block: memory holds a batch_rows x k float32 score matrix, "
            "never the full N x k one."
        ),
    )


class TorchKMeans(Clusterer):
    """Euclidean or spherical k-means in plain torch, on CPU, CUDA or Apple MPS.

    Lloyd's algorithm, one run, exact nearest-centroid search by blocks of ``batch_rows``
    rows. Initial centroids are ``k`` distinct random rows (as faiss and the paper do) or
    k-means++ seeding. Empty clusters are re-seeded after each centroid update by splitting
    a populated cluster exactly as faiss does (donor drawn with probability proportional to
    its size minus one, copies scaled by ``1 +/- 1/1024`` on alternating coordinates); see
    :func:`~dcframe_torch_kmeans.kmeans.split_empty_clusters`. The loop stops before
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

    def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
        check_device(type(self), device)
        rows = float32_rows(x)
        check_k(self.k, rows.shape[0])
        if not np.isfinite(rows).all():
            # faiss refuses such input too; NaN would silently poison every centroid.
            raise ValueError("cannot cluster rows containing NaN or infinite values")

        generator = generator_for_seed(seed)
        data = torch.from_numpy(rows).to(device)
        spherical = self.params.metric == "spherical"
        if spherical:
            data = F.normalize(data, dim=1)
        init = kmeans_plus_plus_init if self.params.init == "k-means++" else random_init
        run = lloyd(
            data,
            init(data, self.k, generator),
            iterations=self.params.iterations,
            generator=generator,
            batch_rows=self.params.batch_rows,
            spherical=spherical,
        )
        logger.debug(
            "torch-kmeans: %d iterations, %d empty-cluster splits, objective %.6g",
            run.iterations,
            sum(run.splits),
            run.objective,
        )
        return Clustering(
            assignments=run.assignments.cpu().numpy(),
            objective=run.objective,
            centroids=run.centroids.cpu().numpy(),
        )

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
        data = torch.from_numpy(rows).to(device)
        spherical = self.params.metric == "spherical"
        if spherical:
            data = F.normalize(data, dim=1)
        # random_init on the rows of all processes: each contributes the chosen rows it holds.
        offset = world.offset(rows.shape[0])
        chosen = torch.randperm(num_rows, generator=generator)[: self.k] - offset
        mine = (chosen >= 0) & (chosen < rows.shape[0])
        initial = torch.zeros(self.k, data.shape[1], dtype=data.dtype, device=data.device)
        initial[mine.to(data.device)] = data[chosen[mine].to(data.device)]
        reduce = functools.partial(_summed, world)
        run = lloyd(
            data,
            reduce(initial),
            iterations=self.params.iterations,
            generator=generator,
            batch_rows=self.params.batch_rows,
            spherical=spherical,
            total=reduce,
        )
        return Clustering(
            assignments=run.assignments.cpu().numpy(),
            objective=run.objective,
            centroids=run.centroids.cpu().numpy(),
        )


def _summed(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over ``world``'s processes, back on its own device."""
    return world.sum_tensor(tensor.to(world.device)).to(tensor.device)
