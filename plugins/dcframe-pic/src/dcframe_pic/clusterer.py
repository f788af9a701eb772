"""The ``pic`` dcframe clusterer: the graph, walk and basins of this package behind the contract."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from dcframe.plugin import (
    Clusterer,
    ClustererParams,
    Clustering,
    Params,
    UserError,
    check_device,
    check_k,
    float32_rows,
)
from dcframe_pic.basins import basin_labels, distribute_singletons
from dcframe_pic.fixed_k import FixedK, to_k_clusters
from dcframe_pic.graph import gaussian_graph, nearest_neighbours
from dcframe_pic.power_iteration import power_iteration

logger = logging.getLogger(__name__)


class PICParams(ClustererParams):
    """Parameters of :class:`PIC` (``k`` comes from ClustererParams)."""

    neighbors: int = Field(
        5,
        ge=1,
        le=1000,
        description=(
            "Nearest neighbours linked to each row in the graph (DeepCluster's PIC: 5). "
            "More neighbours give fewer, larger clusters."
        ),
    )
    sigma: float = Field(
        0.2,
        gt=0.0,
        le=100.0,
        description=(
            "Bandwidth of the Gaussian edge weights exp(-d^2 / sigma^2), d the Euclidean "
            "distance between rows (DeepCluster's PIC: 0.2 on L2-normalised features)."
        ),
    )
    alpha: float = Field(
        0.001,
        gt=0.0,
        lt=1.0,
        description=(
            "Weight of the walk against the restart in v <- alpha W v + (1 - alpha) / N "
            "(DeepCluster's PIC: 0.001); the rest, 1 - alpha, is the teleport probability."
        ),
    )
    iterations: int = Field(
        200, ge=1, le=10000, description="Power iterations (DeepCluster's PIC: 200)."
    )
    distribute_singletons: bool = Field(
        True,
        description=(
            "Move each one-row cluster into the cluster of its nearest neighbour that is not "
            "alone (DeepCluster's PIC does)."
        ),
    )
    block_rows: int = Field(
        4096,
        ge=1,
        description=(
            "Rows per block of the neighbour search: memory holds one block_rows x "
            "block_rows float32 distance matrix, never the full N x N one."
        ),
    )


class PIC(Clusterer):
    """Power Iteration Clustering on a kNN graph: DeepCluster's alternative to k-means.

    Plain torch, on the CPU or CUDA; no faiss needed.

    1. **Graph.** The exact ``neighbors`` nearest rows of every row (Euclidean; blocked
       matrix products on the clustering device), weighted ``exp(-d^2 / sigma^2)``, made
       symmetric as ``W = A + A^T`` (mutual neighbours get twice the weight).
    2. **Scores.** ``iterations`` steps of ``v <- alpha W v + (1 - alpha) / N``,
       ``v <- v / sum(v)`` from the uniform vector: a random walk with restart whose
       scores are high in dense regions.
    3. **Clusters.** Each row points at the neighbour with the largest positive
       ``W[i, j] (v[j] - v[i])`` (itself if none); following the pointers leads to a local
       maximum of the scores, and each maximum's basin is one cluster. With
       ``distribute_singletons``, one-row clusters join the cluster of their nearest
       neighbour that is not alone.
    4. **Exactly k ids.** PIC finds its own number of clusters C. Ids are given by
       decreasing size. If C > k, the k largest clusters are kept and the rows of the
       others move to the nearest kept centroid; if C < k, ids C..k-1 stay **empty**
       (zero centroids; the uniform sampler skips them) and a warning says how many
       clusters PIC found.

    The objective is the sum of squared distances of the rows to their cluster's mean
    (the centroids returned). PIC has no random step: the seed is accepted and ignored,
    and the same rows give the same clusters on the CPU. Steps 2-3 run on the CPU in
    float64 on every device; on CUDA the neighbour search may round differently from the
    CPU, so near-tied neighbours can differ between the two.
    """

    Params: ClassVar[type[Params]] = PICParams
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    params: PICParams

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
        result = self.run(x, device)
        return Clustering(
            assignments=result.assignments.numpy(),
            objective=result.objective,
            centroids=result.centroids.numpy(),
        )

    def run(self, x: np.ndarray, device: str = "cpu") -> FixedK:
        """Cluster ``x`` as :meth:`cluster` does, also saying how many clusters PIC found
        (``found``) and how many rows the mapping to ``k`` moved (``moved``)."""
        check_device(type(self), device)
        rows = float32_rows(x)
        check_k(self.k, rows.shape[0])
        if not np.isfinite(rows).all():
            # A NaN distance would make every comparison false and scramble the graph.
            raise ValueError("cannot cluster rows containing NaN or infinite values")
        neighbors = self.params.neighbors
        if neighbors >= rows.shape[0]:
            raise UserError(
                f"clusterer.neighbors: {neighbors} neighbours per image need at least "
                f"{neighbors + 1} images, there are {rows.shape[0]}: set clusterer.neighbors "
                f"<= {rows.shape[0] - 1}"
            )
        data = torch.from_numpy(rows).to(device)
        with torch.autocast(device_type=data.device.type, enabled=False):
            found = nearest_neighbours(data, neighbors, self.params.block_rows)
            graph = gaussian_graph(found, self.params.sigma)
            if not bool((graph.weights > 0).any()):
                raise UserError(
                    f"clusterer.sigma: {self.params.sigma} is so small for these distances that "
                    "every edge weight exp(-d^2 / sigma^2) is 0 and each image would be its "
                    "own cluster: raise clusterer.sigma"
                )
            lift = power_iteration(graph, self.params.alpha, self.params.iterations)
            labels = basin_labels(graph, lift)
            peaks = int(labels.max()) + 1
            if self.params.distribute_singletons:
                labels = distribute_singletons(labels, found.indices)
            result = to_k_clusters(data, labels, self.k, self.params.block_rows)
        self._report(peaks, result.found, result.moved)
        return result

    def _report(self, peaks: int, found: int, moved: int) -> None:
        """Say how many clusters PIC found and what mapping them to k did."""
        logger.info(
            "pic: %d local maxima, %d clusters after singletons, k=%d, %d rows moved",
            peaks,
            found,
            self.k,
            moved,
        )
        if found < self.k:
            logger.warning(
                "pic found %d clusters for clusterer.k = %d: ids %d..%d are empty; lower "
                "clusterer.k, or lower clusterer.neighbors or clusterer.sigma for more clusters",
                found,
                self.k,
                found,
                self.k - 1,
            )
