"""torch-kmeans on small real data: recovery, determinism, splits, faiss agreement, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dcframe import registries
from dcframe.components.builtin_params import FaissKMeansParams, TorchKMeansParams
from dcframe.components.clusterers import FaissKMeans, TorchKMeans
from dcframe.components.clusterers.lloyd import (
    SPLIT_EPS,
    NearestCentroids,
    kmeans_plus_plus_init,
    lloyd,
    random_init,
    split_empty_clusters,
)
from dcframe.components.clusterers.torch_kmeans import generator_for_seed
from dcframe.core.contract import check_component
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Clustering
from dcframe.engine.metrics import nmi


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five tight, far-apart Gaussian blobs of 100 points in 16 dims, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, 16)) * 20.0
    truth = np.repeat(np.arange(5), 100)
    return (centres[truth] + rng.standard_normal((500, 16))).astype(np.float32), truth


def _overlapping_mixture(seed: int = 0) -> np.ndarray:
    """3000 rows in 32 dims from 20 overlapping Gaussians: no partition is obviously right."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, 32)) * 1.5
    labels = rng.integers(0, 20, size=3000)
    return (centres[labels] + rng.standard_normal((3000, 32))).astype(np.float32)


def _kmeans(k: int, **params: object) -> TorchKMeans:
    return TorchKMeans(TorchKMeansParams(k=k, **params))


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    x64, c64 = x.astype(np.float64), centroids.astype(np.float64)
    return ((x64[:, None, :] - c64[None, :, :]) ** 2).sum(axis=2)


# ----------------------------------------------------------------------- the component


def test_params_are_strict_and_described() -> None:
    for name, field in TorchKMeansParams.model_fields.items():
        assert field.description, f"{name} has no description"
    with pytest.raises(ValidationError):
        TorchKMeansParams(k=5, batch_rows=0)
    with pytest.raises(ValidationError):
        TorchKMeansParams(k=5, metric="cosine")
    with pytest.raises(ValidationError):
        TorchKMeansParams(k=5, iterations="20")
    with pytest.raises(ValidationError):
        TorchKMeansParams(k=5, tolerance=1e-4)


def test_blobs_are_recovered() -> None:
    x, truth = _blobs()
    # k random initial rows often miss a blob (hitting all 5 has probability 5!/5^5),
    # so recovery is judged on the lowest objective over a few seeds.
    runs = [_kmeans(5).cluster(x, seed, "cpu") for seed in range(10)]
    result = min(runs, key=lambda run: run.objective)
    assert isinstance(result, Clustering)
    assert result.assignments.dtype == np.int64 and result.assignments.shape == (500,)
    assert result.centroids.dtype == np.float32 and result.centroids.shape == (5, 16)
    assert nmi(result.assignments, truth) == pytest.approx(1.0)


def test_float64_input_is_accepted() -> None:
    x, truth = _blobs()
    result = _kmeans(5, init="k-means++").cluster(x.astype(np.float64), 0, "cpu")
    assert result.centroids.dtype == np.float32
    assert nmi(result.assignments, truth) == pytest.approx(1.0)


def test_same_seed_same_result_other_seed_other_start() -> None:
    x = _overlapping_mixture()
    first, again = (_kmeans(20).cluster(x, 7, "cpu") for _ in range(2))
    np.testing.assert_array_equal(first.assignments, again.assignments)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    assert first.objective == again.objective
    other = _kmeans(20).cluster(x, 8, "cpu")
    assert not np.array_equal(first.centroids, other.centroids)


def test_spherical_centroids_are_unit_and_assignment_is_cosine_nearest() -> None:
    x = _overlapping_mixture()
    result = _kmeans(20, metric="spherical").cluster(x, 0, "cpu")
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-5)
    rows = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosine = rows.astype(np.float64) @ result.centroids.astype(np.float64).T
    np.testing.assert_array_equal(result.assignments, cosine.argmax(axis=1))


def test_kmeans_plus_plus_picks_one_row_per_blob() -> None:
    x, truth = _blobs()
    rows = torch.from_numpy(x)
    centroids = kmeans_plus_plus_init(rows, 5, _generator())
    # Every chosen centroid is a row of x, and D^2 sampling lands in every far-apart blob.
    matches = (centroids[:, None, :] == rows[None, :, :]).all(dim=2)
    assert torch.all(matches.sum(dim=1) == 1)
    assert sorted(truth[matches.int().argmax(dim=1).numpy()]) == [0, 1, 2, 3, 4]
    result = _kmeans(5, init="k-means++").cluster(x, 0, "cpu")
    assert nmi(result.assignments, truth) == pytest.approx(1.0)


def test_tiny_and_huge_distance_blocks_give_the_same_clustering() -> None:
    x = _overlapping_mixture()
    tiny = _kmeans(20, batch_rows=97).cluster(x, 3, "cpu")
    huge = _kmeans(20, batch_rows=1_000_000).cluster(x, 3, "cpu")
    np.testing.assert_array_equal(tiny.assignments, huge.assignments)
    np.testing.assert_array_equal(tiny.centroids, huge.centroids)
    # BLAS may round a 97-row product differently from a 3000-row one in the last bit,
    # which moves the summed distances but, here, no argmin.
    assert tiny.objective == pytest.approx(huge.objective, rel=1e-6)


def test_random_start_is_faiss_kmeans_start() -> None:
    faiss = pytest.importorskip("faiss")
    x = _overlapping_mixture()
    for seed in (0, 31, 2**31 + 5):
        # With no iteration, faiss returns the initial centroids it drew for this seed,
        # reduced to a C int as dcframe's faiss-kmeans does.
        clus = faiss.Clustering(32, 20)
        clus.niter = 0
        clus.seed = seed % 2**31
        clus.train(x, faiss.IndexFlatL2(32))
        faiss_start = faiss.vector_to_array(clus.centroids).reshape(20, 32)
        start = random_init(torch.from_numpy(x), 20, generator_for_seed(seed))
        np.testing.assert_array_equal(start.numpy(), faiss_start)


def test_same_seed_agrees_with_faiss_kmeans() -> None:
    pytest.importorskip("faiss")
    x = _overlapping_mixture()
    for seed in range(3):
        faiss_result = FaissKMeans(FaissKMeansParams(k=20)).cluster(x, seed, "cpu")
        torch_result = _kmeans(20).cluster(x, seed, "cpu")
        # Same start, same Lloyd steps: only float rounding differs (faiss sums its
        # objective in float32), so a near-tie could flip a row or two, no more.
        assert nmi(torch_result.assignments, faiss_result.assignments) > 0.99
        assert torch_result.objective == pytest.approx(faiss_result.objective, rel=1e-4)


def test_k_larger_than_rows_is_a_user_error_naming_clusterer_k() -> None:
    x, _ = _blobs()
    with pytest.raises(UserError, match=r"clusterer\.k"):
        _kmeans(501).cluster(x, 0, "cpu")


def test_unavailable_device_is_a_user_error() -> None:
    assert "cpu" in TorchKMeans.available_devices()
    assert set(TorchKMeans.available_devices()) <= set(TorchKMeans.devices)
    missing = [d for d in TorchKMeans.devices if d not in TorchKMeans.available_devices()]
    x, _ = _blobs()
    for device in missing:
        with pytest.raises(UserError, match="available devices"):
            _kmeans(5).cluster(x, 0, device)


def test_non_finite_rows_are_refused() -> None:
    x, _ = _blobs()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _kmeans(5).cluster(x, 0, "cpu")


def test_is_a_builtin() -> None:
    entry = registries.clusterers.get("torch-kmeans")
    assert entry.cls is TorchKMeans
    assert entry.origin.builtin


# --------------------------------------------------------------------- the algorithm


def test_blocked_nearest_centroids_match_brute_force() -> None:
    x = _overlapping_mixture()[:500]
    nearest = NearestCentroids(torch.from_numpy(x), batch_rows=64)
    # Two calls with different k: the reused score buffer must follow the new width.
    for k in (20, 7):
        centroids = x[:k] + 0.5
        assignments, distances = nearest(torch.from_numpy(centroids))
        exact = _squared_distances(x, centroids)
        np.testing.assert_array_equal(assignments.numpy(), exact.argmin(axis=1))
        np.testing.assert_allclose(distances.numpy(), exact.min(axis=1), rtol=1e-4, atol=1e-4)


def test_objective_is_measured_before_the_last_update() -> None:
    x = _overlapping_mixture()
    start = torch.from_numpy(x[:20].copy())
    run = lloyd(torch.from_numpy(x), start, iterations=1, generator=_generator(), batch_rows=512)
    # One iteration: the objective belongs to the starting centroids, not the updated ones.
    assert run.objective == pytest.approx(_squared_distances(x, x[:20]).min(axis=1).sum(), rel=1e-5)
    final = _squared_distances(x, run.centroids.numpy()).min(axis=1).sum()
    assert final < run.objective


def test_split_copies_the_donor_with_a_symmetric_perturbation() -> None:
    centroids = torch.tensor([[2.0, 4.0, 8.0], [9.0, 9.0, 9.0], [1.0, 1.0, 1.0]])
    counts = torch.tensor([6.0, 0.0, 1.0])
    assert split_empty_clusters(centroids, counts, _generator()) == 1
    # Cluster 2 holds a single row, so only cluster 0 can give.
    up, down = 1.0 + SPLIT_EPS, 1.0 - SPLIT_EPS
    # Powers of two times 1 +/- 2**-10 are exact in float32, so equality is exact too.
    expected = [[2.0 * down, 4.0 * up, 8.0 * down], [2.0 * up, 4.0 * down, 8.0 * up], [1.0] * 3]
    np.testing.assert_array_equal(centroids.numpy(), np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(counts.numpy(), [3.0, 3.0, 1.0])


def test_split_leaves_no_empty_cluster_and_keeps_the_row_count() -> None:
    centroids = torch.randn(6, 4, generator=_generator())
    counts = torch.tensor([0.0, 7.0, 0.0, 0.0, 2.0, 0.0])
    assert split_empty_clusters(centroids, counts, _generator()) == 4
    assert torch.all(counts > 0)
    assert float(counts.sum()) == 9.0
    assert split_empty_clusters(centroids, counts, _generator()) == 0


def test_split_donor_is_drawn_proportionally_to_size_minus_one() -> None:
    generator = _generator()
    sizes = torch.tensor([3.0, 0.0, 1.0, 5.0])
    donors = []
    for _ in range(2000):
        counts = sizes.clone()
        split_empty_clusters(torch.ones(4, 2), counts, generator)
        # The donor is the one cluster that gave half of its rows away.
        donors.append(int(torch.nonzero(counts < sizes)))
    frequency = np.bincount(donors, minlength=4) / len(donors)
    # Weights size - 1: cluster 0 -> 2, cluster 2 -> 0 (never), cluster 3 -> 4.
    assert frequency[2] == 0
    assert frequency[0] == pytest.approx(1 / 3, abs=0.035)
    assert frequency[3] == pytest.approx(2 / 3, abs=0.035)


def test_split_without_any_donor_is_refused() -> None:
    counts = torch.tensor([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="more than one row"):
        split_empty_clusters(torch.zeros(3, 2), counts, _generator())


def test_lloyd_splits_clusters_left_empty_by_a_degenerate_start() -> None:
    x, truth = _blobs()
    rows = torch.from_numpy(x)
    # Every row is nearer the mean than the four far-away centroids, so the first
    # assignment leaves four clusters empty; only splitting can bring them back.
    start = torch.full((5, 16), 1000.0)
    start[0] = rows.mean(dim=0)
    run = lloyd(rows, start, iterations=20, generator=_generator(), batch_rows=128)
    assert run.splits[0] == 4
    assert run.splits[-1] == 0
    assert np.all(np.bincount(run.assignments.numpy(), minlength=5) > 0)
    assert nmi(run.assignments.numpy(), truth) == pytest.approx(1.0)


def test_lloyd_stops_at_a_fixed_point() -> None:
    x, _ = _blobs()
    rows = torch.from_numpy(x)
    run = lloyd(rows, rows[::100].clone(), iterations=50, generator=_generator(), batch_rows=128)
    assert run.iterations < 50
    again = lloyd(rows, run.centroids, iterations=50, generator=_generator(), batch_rows=128)
    assert again.iterations == 1
    assert torch.equal(again.centroids, run.centroids)


def test_passes_dcframe_contract_checks() -> None:
    check_component("clusterer", "torch-kmeans")


def test_clusters_in_float32_inside_an_autocast_region() -> None:
    # The engine never clusters under autocast, but an API user may call it from inside
    # one. k-means++ seeding measures distances with a matrix product, which bf16 autocast
    # would round enough to pick other rows (seen: 444 of 3000 rows assigned elsewhere).
    x = _overlapping_mixture()
    plain = _kmeans(20, init="k-means++").cluster(x, 0, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = _kmeans(20, init="k-means++").cluster(x, 0, "cpu")
    np.testing.assert_array_equal(autocast.assignments, plain.assignments)
    np.testing.assert_array_equal(autocast.centroids, plain.centroids)
    assert autocast.centroids.dtype == np.float32


def test_full_float32_matmuls_inside_and_the_caller_s_setting_restored() -> None:
    seen: list[str] = []

    def spy(centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> int:
        seen.append(torch.get_float32_matmul_precision())
        return split_empty_clusters(centroids, counts, generator)

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # TF32 on CUDA, bf16 passes on some CPUs
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("dcframe.components.clusterers.lloyd.split_empty_clusters", spy)
            _kmeans(5, iterations=2).cluster(_blobs()[0], 0, "cpu")
        assert seen == ["highest", "highest"]
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
