"""Clustering metrics: normalized mutual information and cluster-size statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized mutual information of two labelings of the same items, in [0, 1].

    Uses the geometric normalisation ``I(A; B) / sqrt(H(A) H(B))``, the definition of the
    DeepCluster paper. scikit-learn's default changed to the arithmetic mean
    ``I / ((H(A) + H(B)) / 2)`` in version 0.22, which gives lower values whenever the two
    entropies differ, so it is requested explicitly to stay comparable with the paper.
    The value does not depend on the label ids, only on the partitions they define.

    Args:
        a: (N,) integer labels, e.g. this epoch's cluster assignment.
        b: (N,) integer labels, e.g. the previous epoch's assignment or the true classes.
    """
    from sklearn.metrics import normalized_mutual_info_score  # slow import: only when used

    return float(normalized_mutual_info_score(a, b, average_method="geometric"))


@dataclass(frozen=True)
class ClusterSizeStats:
    """Sizes of the clusters of one assignment.

    Attributes:
        empty: Number of the ``k`` clusters that received no image.
        min: Size of the smallest NON-EMPTY cluster.
        median: Median size over the NON-EMPTY clusters.
        max: Size of the largest cluster.
    """

    empty: int
    min: int
    median: float
    max: int


def cluster_size_stats(assignments: np.ndarray, k: int) -> ClusterSizeStats:
    """Cluster-size statistics of ``assignments`` (ids in ``[0, k)``).

    Empty clusters are counted in ``empty`` and left out of ``min`` and ``median``, so that
    those two describe the clusters training actually sees (otherwise any empty cluster
    would pin ``min`` at 0).

    Raises:
        ValueError: ``assignments`` is empty, not 1-D, or has ids outside ``[0, k)``.
    """
    labels = np.asarray(assignments)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of cluster ids, got {labels.shape}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"cluster ids must lie in [0, {k}), got [{labels.min()}, {labels.max()}]")
    sizes = np.bincount(labels, minlength=k)
    filled = sizes[sizes > 0]
    return ClusterSizeStats(
        empty=int(k - filled.size),
        min=int(filled.min()),
        median=float(np.median(filled)),
        max=int(filled.max()),
    )
