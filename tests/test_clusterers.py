"""faiss and scikit-learn k-means on small real data."""

from __future__ import annotations

import numpy as np
import pytest

from dcframe.components.builtin_params import FaissKMeansParams, SklearnKMeansParams
from dcframe.components.clusterers import FaissKMeans, SklearnKMeans
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Clusterer, Clustering
from dcframe.engine.metrics import cluster_size_stats, nmi


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five tight, far-apart Gaussian blobs of 100 points in 16 dims, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, 16)) * 20.0
    truth = np.repeat(np.arange(5), 100)
    return (centres[truth] + rng.standard_normal((500, 16))).astype(np.float32), truth


def _faiss(k: int, iterations: int = 20) -> FaissKMeans:
    return FaissKMeans(FaissKMeansParams(k=k, iterations=iterations))


def _sklearn(k: int, init: str = "random") -> SklearnKMeans:
    return SklearnKMeans(SklearnKMeansParams(k=k, init=init))


def _best_of_seeds(clusterer: Clusterer, x: np.ndarray, seeds: int = 10) -> Clustering:
    # k random initial points often miss a blob (hitting all 5 has probability 5!/5^5),
    # so recovery is judged on the lowest objective over a few seeds.
    runs = [clusterer.cluster(x, seed, "cpu") for seed in range(seeds)]
    return min(runs, key=lambda result: result.objective)


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    x64, c64 = x.astype(np.float64), centroids.astype(np.float64)
    return ((x64[:, None, :] - c64[None, :, :]) ** 2).sum(axis=2)


@pytest.mark.parametrize("make", [_faiss, _sklearn], ids=["faiss", "sklearn"])
def test_blobs_are_recovered(make) -> None:
    x, truth = _blobs()
    result = _best_of_seeds(make(5), x)
    assert result.assignments.dtype == np.int64 and result.assignments.shape == (500,)
    assert result.centroids.dtype == np.float32 and result.centroids.shape == (5, 16)
    assert nmi(result.assignments, truth) == pytest.approx(1.0)


def test_faiss_and_sklearn_agree_on_blobs() -> None:
    x, _ = _blobs()
    faiss_result = _best_of_seeds(_faiss(5), x)
    sklearn_result = _best_of_seeds(_sklearn(5), x)
    assert nmi(faiss_result.assignments, sklearn_result.assignments) > 0.99
    # Converged on the same partition, both report its sum of squared distances.
    assert faiss_result.objective == pytest.approx(sklearn_result.objective, rel=1e-4)


def test_sklearn_kmeans_plus_plus_init_runs() -> None:
    x, truth = _blobs()
    result = _sklearn(5, init="k-means++").cluster(x, 0, "cpu")
    assert nmi(result.assignments, truth) > 0.8


@pytest.mark.parametrize("make", [_faiss, _sklearn], ids=["faiss", "sklearn"])
def test_same_seed_same_result_other_seeds_differ(make) -> None:
    x = np.random.default_rng(3).standard_normal((400, 8)).astype(np.float32)
    clusterer = make(10)
    first, again = clusterer.cluster(x, 7, "cpu"), clusterer.cluster(x, 7, "cpu")
    np.testing.assert_array_equal(first.assignments, again.assignments)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    assert first.objective == again.objective
    others = [clusterer.cluster(x, seed, "cpu").centroids for seed in (8, 9, 10)]
    assert any(not np.array_equal(first.centroids, c) for c in others)


@pytest.mark.parametrize("make", [_faiss, _sklearn], ids=["faiss", "sklearn"])
def test_assignments_are_nearest_final_centroid(make) -> None:
    x = np.random.default_rng(4).standard_normal((600, 8)).astype(np.float32)
    result = make(12).cluster(x, 1, "cpu")
    distances = _squared_distances(x, result.centroids)
    assigned = distances[np.arange(len(x)), result.assignments]
    np.testing.assert_allclose(assigned, distances.min(axis=1), rtol=1e-4, atol=1e-4)


def test_faiss_objective_is_the_last_iteration_before_its_update() -> None:
    # faiss records, at iteration t, the distances to the centroids iteration t started
    # from, i.e. the final centroids of a run with t - 1 iterations (same seed, same path).
    x = np.random.default_rng(5).standard_normal((600, 8)).astype(np.float32)
    previous = _faiss(12, iterations=4).cluster(x, 2, "cpu")
    result = _faiss(12, iterations=5).cluster(x, 2, "cpu")
    before_update = _squared_distances(x, previous.centroids).min(axis=1).sum()
    assert result.objective == pytest.approx(before_update, rel=1e-5)
    # The last update can only lower the sum for the returned (nearest final) assignment.
    after_update = _squared_distances(x, result.centroids).min(axis=1).sum()
    assert after_update <= result.objective * (1 + 1e-6)


def test_sklearn_objective_is_inertia_of_the_returned_clustering() -> None:
    x = np.random.default_rng(5).standard_normal((600, 8)).astype(np.float32)
    result = _sklearn(12).cluster(x, 2, "cpu")
    recomputed = _squared_distances(x, result.centroids)[np.arange(600), result.assignments].sum()
    assert result.objective == pytest.approx(recomputed, rel=1e-4)


def test_faiss_survives_empty_clusters() -> None:
    # 5 distinct points, 40 copies each, k = 8: random initial centroids repeat points, so
    # clusters empty out and faiss keeps splitting; at most 5 can hold points at the end.
    rng = np.random.default_rng(6)
    distinct = rng.standard_normal((5, 4)).astype(np.float32) * 10.0
    truth = np.repeat(np.arange(5), 40)
    x = distinct[truth]
    result = _faiss(8).cluster(x, 0, "cpu")
    assert np.isfinite(result.centroids).all() and np.isfinite(result.objective)
    assert result.assignments.min() >= 0 and result.assignments.max() < 8
    stats = cluster_size_stats(result.assignments, 8)
    assert stats.empty >= 3
    # Identical rows share their nearest centroid, so clusters are unions of the 5 groups.
    assert stats.min >= 40 and stats.min % 40 == 0 and stats.max % 40 == 0
    assert nmi(result.assignments, truth) > 0.5


def test_sklearn_survives_more_clusters_than_distinct_rows() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
    with pytest.warns(Warning, match="distinct clusters"):
        result = _sklearn(5).cluster(x, 0, "cpu")
    assert cluster_size_stats(result.assignments, 5).empty >= 2


@pytest.mark.parametrize("make", [_faiss, _sklearn], ids=["faiss", "sklearn"])
def test_more_clusters_than_rows_is_a_user_error(make) -> None:
    x = np.zeros((9, 4), dtype=np.float32)
    with pytest.raises(UserError, match=r"clusterer\.k: 10 .*\(9\).*clusterer\.k <= 9"):
        make(10).cluster(x, 0, "cpu")


def test_inputs_are_converted_to_float32() -> None:
    x, truth = _blobs()
    result = _faiss(5).cluster(np.asfortranarray(x.astype(np.float64)), 0, "cpu")
    assert result.centroids.dtype == np.float32
    assert result.assignments.shape == truth.shape


def test_devices() -> None:
    assert FaissKMeans.devices == ("cpu", "cuda")
    assert "cpu" in FaissKMeans.available_devices()
    assert SklearnKMeans.available_devices() == ("cpu",)
    x = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(UserError, match="cuda"):
        _sklearn(2).cluster(x, 0, "cuda")
