"""NMI with the paper's geometric normalisation, and cluster-size statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from dcframe.engine.metrics import ClusterSizeStats, cluster_size_stats, nmi


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_matches_sklearn_geometric(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 5, size=300), rng.integers(0, 8, size=300)
    expected = normalized_mutual_info_score(a, b, average_method="geometric")
    assert nmi(a, b) == pytest.approx(expected, abs=1e-12)
    assert isinstance(nmi(a, b), float)


def test_nmi_is_geometric_not_arithmetic() -> None:
    # b refines a: I = H(a) = ln 2, H(b) = ln 4, so geometric NMI = 1 / sqrt(2),
    # while the arithmetic mean gives ln 2 / (1.5 ln 2) = 2 / 3.
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    b = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert nmi(a, b) == pytest.approx(1 / math.sqrt(2))
    arithmetic = normalized_mutual_info_score(a, b, average_method="arithmetic")
    assert arithmetic == pytest.approx(2 / 3)
    assert nmi(a, b) != pytest.approx(arithmetic)


def test_nmi_of_identical_and_relabelled_partitions_is_one() -> None:
    a = np.random.default_rng(0).integers(0, 6, size=200)
    assert nmi(a, a) == pytest.approx(1.0)
    relabelled = np.array([5, 3, 0, 1, 4, 2])[a] + 100
    assert nmi(a, relabelled) == pytest.approx(1.0)


def test_cluster_size_stats_on_a_known_array() -> None:
    # k = 6: sizes 3, 0, 1, 5, 0, 2 -> two empty; non-empty sizes 1, 2, 3, 5.
    assignments = np.array([0, 0, 0, 2, 3, 3, 3, 3, 3, 5, 5])
    stats = cluster_size_stats(assignments, 6)
    assert stats == ClusterSizeStats(empty=2, min=1, median=2.5, max=5)


def test_cluster_size_stats_without_empty_clusters() -> None:
    stats = cluster_size_stats(np.array([1, 0, 1, 2, 1]), 3)
    assert stats == ClusterSizeStats(empty=0, min=1, median=1.0, max=3)


@pytest.mark.parametrize("bad", [np.array([0, 3]), np.array([-1, 0]), np.array([], dtype=int)])
def test_cluster_size_stats_refuses_bad_ids(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        cluster_size_stats(bad, 3)


def test_leave_one_out_knn_is_eval_knn_with_each_query_left_out() -> None:
    """The per-epoch signal equals ``dcframe eval knn``'s vote with the query's own row
    removed from the labelled rows, query by query."""
    import torch

    from dcframe.engine.metrics import leave_one_out_knn
    from dcframe.evaluation.knn import knn_votes

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    rows = (rng.normal(size=(120, 8)) + 2.0 * np.eye(8)[labels]).astype(np.float32)
    queries = np.sort(rng.choice(120, 50, replace=False))
    reference = []
    for q in queries:
        others = np.delete(np.arange(120), q)
        votes = knn_votes(
            torch.from_numpy(rows[others]),
            torch.from_numpy(labels[others]),
            torch.from_numpy(rows[q : q + 1]),
            4,
            k=20,
        )
        reference.append(int(votes.argmax()) == labels[q])
    measured = leave_one_out_knn(rows, labels, queries, k=20)
    assert measured == pytest.approx(np.mean(reference), abs=1e-9)
    assert 0.5 < measured <= 1.0  # the groups are separable: well above chance (0.25)


def test_knn_candidates_of_shards_merge_to_the_whole() -> None:
    """Searching two halves apart and merging their candidates gives the whole's answer."""
    from dcframe.engine.metrics import knn_vote_accuracy, leave_one_out_knn, nearest_others

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 90)
    rows = rng.normal(size=(90, 6)).astype(np.float32)
    queries = np.arange(0, 90, 3)
    parts = [np.arange(0, 40), np.arange(40, 90)]
    found = [nearest_others(rows[p], p, rows[queries], queries, 5) for p in parts]
    similarity = np.concatenate([f[0] for f in found], axis=1)
    classes = np.concatenate([labels[p][f[1]] for p, f in zip(parts, found, strict=True)], axis=1)
    merged = knn_vote_accuracy(similarity, classes, labels[queries], 5)
    assert merged == leave_one_out_knn(rows, labels, queries, k=5)
