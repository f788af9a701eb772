"""From PIC's own number of clusters C to exactly ``k`` ids, as dcframe's clusterers promise.

The rule:

* Clusters are renumbered by decreasing size (ties: the lower old id first), so id 0 is
  the largest cluster.
* ``C > k``: the ``k`` largest clusters are kept; every row of the others moves to the
  kept cluster whose centroid (the mean of its rows) is nearest, in squared Euclidean
  distance. No id is empty.
* ``C <= k``: ids ``C..k-1`` are empty; their centroids are zero rows (nothing to average).
  The uniform sampler never draws from empty clusters, and dcframe counts them in the
  epoch's ``empty_clusters``.

The centroids returned are the means of the final clusters and the objective is the sum
over all rows of the squared distance to their cluster's centroid (float64 sum), the same
meaning as k-means' objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FixedK:
    """Exactly ``k`` clusters made from PIC's.

    Attributes:
        assignments: (N,) int64 ids in ``[0, k)``, 0 for the largest cluster.
        centroids: (k, d) float32 means of the clusters, zero rows for empty ids.
        objective: Sum of squared distances of the rows to their centroid.
        found: C, the number of clusters PIC found before the mapping.
        moved: Rows moved out of the clusters beyond the k largest.
    """

    assignments: torch.Tensor
    centroids: torch.Tensor
    objective: float
    found: int
    moved: int


def cluster_means(
    x: torch.Tensor, labels: torch.Tensor, k: int, block_rows: int = 65536
) -> torch.Tensor:
    """(k, d) float32 mean row of each id (summed in float64); zero rows for empty ids.

    Rows are summed ``block_rows`` at a time, so no float64 copy of ``x`` is ever whole.
    """
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    for rows, ids in zip(x.split(block_rows), labels.split(block_rows), strict=True):
        sums.index_add_(0, ids, rows.double())
    counts = torch.bincount(labels, minlength=k).to(sums)
    return (sums / counts.clamp(min=1.0)[:, None]).float()


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor, block_rows: int) -> torch.Tensor:
    """(N,) int64 id of the nearest centroid of every row, by blocks of ``block_rows`` rows."""
    squared_norms = (centroids * centroids).sum(dim=1)
    nearest = [
        # |x|^2 is the same for every centroid of a row, so it is left out of the argmin.
        torch.addmm(squared_norms[None, :], block, centroids.T, alpha=-2.0).argmin(dim=1)
        for block in x.split(block_rows)
    ]
    return torch.cat(nearest) if nearest else torch.empty(0, dtype=torch.int64)


def to_k_clusters(x: torch.Tensor, labels: torch.Tensor, k: int, block_rows: int) -> FixedK:
    """Map labels ``0..C-1`` of the rows ``x`` (N, d) to exactly ``k`` ids (see module doc).

    ``labels`` must be on the CPU; ``x`` may be on any device, where the centroid work runs.
    """
    sizes = torch.bincount(labels)
    found = len(sizes)
    order = torch.sort(-sizes, stable=True).indices  # largest first, ties by old id
    rank = torch.empty_like(order)
    rank[order] = torch.arange(found)
    assignments = rank[labels].to(x.device)
    moved = 0
    if found > k:
        outside = assignments >= k
        kept = cluster_means(x[~outside], assignments[~outside], k, block_rows)
        assignments[outside] = nearest_centroid(x[outside], kept, block_rows)
        moved = int(outside.sum())
    centroids = cluster_means(x, assignments, k, block_rows)
    objective = sum(
        float(((rows - centroids[ids]).double() ** 2).sum())
        for rows, ids in zip(x.split(block_rows), assignments.split(block_rows), strict=True)
    )
    return FixedK(
        assignments=assignments.cpu(),
        centroids=centroids.cpu(),
        objective=objective,
        found=found,
        moved=moved,
    )
