"""Numbers about one epoch's clusters and about how clusters move between epochs.

All functions take assignments as saved by a run: (N,) int64 cluster ids, -1 for images
left out as unreadable (those are ignored everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cluster_sizes(assignment: np.ndarray, k: int) -> np.ndarray:
    """(k,) number of images in each cluster."""
    return np.bincount(assignment[assignment >= 0], minlength=k)[:k]


@dataclass(frozen=True)
class LabelStats:
    """How one epoch's clusters line up with the true labels (labels never train anything).

    Attributes:
        contingency: (k, classes) number of images of each class in each cluster.
        majority: (k,) the most frequent class of each cluster (-1 for an empty cluster).
        purity: (k,) fraction of a cluster's images that belong to its majority class
            (NaN for an empty cluster).
        class_purity: (classes,) of the images in clusters whose majority is the class, the
            fraction that are of that class (NaN when no cluster has it as majority).
        class_coverage: (classes,) fraction of the class's images that lie in clusters
            whose majority is the class.
        class_clusters: (classes,) number of clusters whose majority is the class.
    """

    contingency: np.ndarray
    majority: np.ndarray
    purity: np.ndarray
    class_purity: np.ndarray
    class_coverage: np.ndarray
    class_clusters: np.ndarray


def label_stats(assignment: np.ndarray, labels: np.ndarray, k: int, classes: int) -> LabelStats:
    """Contingency table, majority classes and purities of one assignment."""
    kept = assignment >= 0
    table = np.zeros((k, classes), dtype=np.int64)
    np.add.at(table, (assignment[kept], labels[kept]), 1)
    sizes = table.sum(axis=1)
    majority = np.where(sizes > 0, table.argmax(axis=1), -1)
    hits = table.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(sizes > 0, hits / sizes, np.nan)
        in_majority = np.zeros(classes)  # images in clusters of majority c
        correct = np.zeros(classes)  # ... that are of class c
        np.add.at(in_majority, majority[sizes > 0], sizes[sizes > 0])
        np.add.at(correct, majority[sizes > 0], hits[sizes > 0])
        class_purity = np.where(in_majority > 0, correct / in_majority, np.nan)
        class_coverage = correct / table.sum(axis=0)
    class_clusters = np.bincount(majority[sizes > 0], minlength=classes)
    return LabelStats(table, majority, purity, class_purity, class_coverage, class_clusters)


# ------------------------------------------------------------------ between epochs


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of the clusters of two epochs (cluster ids are arbitrary per
    epoch), made greedily by largest overlap first.

    Attributes:
        previous_of: (k,) for each cluster of the later epoch, its matched cluster of the
            earlier epoch, or -1 when it has none.
        overlap: (k,) images the matched pair shares.
        changed: Fraction of the images clustered in both epochs whose cluster changed,
            i.e. that are not in the matched counterpart of their earlier cluster.
    """

    previous_of: np.ndarray
    overlap: np.ndarray
    changed: float


def pair_counts(
    previous: np.ndarray, current: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero cells of the (previous x current) contingency table: previous cluster,
    current cluster and count, without building the k x k table."""
    both = (previous >= 0) & (current >= 0)
    cells, counts = np.unique(previous[both] * k + current[both], return_counts=True)
    return cells // k, cells % k, counts


def match_clusters(previous: np.ndarray, current: np.ndarray, k: int) -> Matching:
    """Match ``current``'s clusters to ``previous``'s, largest overlaps first."""
    before, after, counts = pair_counts(previous, current, k)
    previous_of = np.full(k, -1, dtype=np.int64)
    overlap = np.zeros(k, dtype=np.int64)
    taken = np.zeros(k, dtype=bool)
    for i in np.argsort(-counts, kind="stable"):
        if previous_of[after[i]] < 0 and not taken[before[i]]:
            previous_of[after[i]] = before[i]
            overlap[after[i]] = counts[i]
            taken[before[i]] = True
    total = int(counts.sum())
    changed = 1.0 - overlap.sum() / total if total else float("nan")
    return Matching(previous_of, overlap, float(changed))


def flow_matrix(
    previous: np.ndarray, current: np.ndarray, k: int, clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where the images of some of ``current``'s clusters were in the earlier epoch.

    Returns the earlier clusters shown (the matched counterparts of ``clusters``, in the same
    order, -1 where none) and a (len(clusters), len(clusters) + 1) matrix: row i is the
    fraction of the images of ``clusters[i]`` that came from each shown earlier cluster,
    the last column from any other cluster (or were not clustered then).
    """
    matched = match_clusters(previous, current, k).previous_of[clusters]
    matrix = np.zeros((len(clusters), len(clusters) + 1))
    for row, cluster in enumerate(clusters):
        came_from = previous[current == cluster]
        if len(came_from) == 0:
            continue
        for column, source in enumerate(matched):
            if source >= 0:
                matrix[row, column] = np.count_nonzero(came_from == source)
        matrix[row, -1] = len(came_from) - matrix[row, :-1].sum()
        matrix[row] /= len(came_from)
    return matched, matrix
