"""Per-cluster draw counts of the uniform and random samplers."""

from __future__ import annotations

import numpy as np
import pytest

from dcframe.components.samplers import (
    RandomSampler,
    SamplerParams,
    UniformClusterParams,
    UniformClusterSampler,
    epoch_size,
)

# Cluster ids 0..9 with only 2, 5, 7 and 9 populated, sizes 1000, 100, 10 and 1 (N = 1111).
SIZES = {2: 1000, 5: 100, 7: 10, 9: 1}
K = 10


def _imbalanced(seed: int = 0) -> np.ndarray:
    labels = np.concatenate([np.full(size, cluster) for cluster, size in SIZES.items()])
    return np.random.default_rng(seed).permutation(labels)


def _counts(assignments: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return np.bincount(assignments[indices], minlength=K)


def _uniform(reassign: float = 1.0, quirk: bool = False) -> UniformClusterSampler:
    return UniformClusterSampler(
        UniformClusterParams(reassign=reassign, released_code_indexing=quirk)
    )


def _random(reassign: float = 1.0) -> RandomSampler:
    return RandomSampler(SamplerParams(reassign=reassign))


def test_epoch_size() -> None:
    assert epoch_size(1.0, 1111) == 1111
    assert epoch_size(0.5, 1000) == 500
    assert epoch_size(0.29, 100) == 29  # 0.29 * 100 is 28.999... in floating point
    assert epoch_size(0.5, 1111) == 556  # 555.5 rounds half up
    assert epoch_size(1e-9, 10) == 1
    assert epoch_size(2.5, 4) == 10


@pytest.mark.parametrize("reassign", [1.0, 0.5, 3.0])
def test_uniform_gives_every_non_empty_cluster_the_same_share(reassign: float) -> None:
    assignments = _imbalanced()
    indices = _uniform(reassign).sample(assignments, np.random.default_rng(0))
    m = epoch_size(reassign, assignments.size)
    filled = len(SIZES)
    per_cluster = m // filled + 1
    dropped = filled * per_cluster - m
    counts = _counts(assignments, indices)
    assert indices.dtype == np.int64 and indices.size == m
    assert counts.sum() == m
    # Empty clusters are never drawn and do not count in K'.
    assert all(counts[c] == 0 for c in range(K) if c not in SIZES)
    filled_counts = counts[list(SIZES)]
    # Each cluster got per_cluster draws; the truncation removed `dropped` of them at random.
    assert (filled_counts <= per_cluster).all()
    assert (filled_counts >= per_cluster - dropped).all()


def test_uniform_counts_for_the_exact_case() -> None:
    # M = 1111, K' = 4: 278 draws each, 1112 in all, one dropped: three 278s and one 277.
    assignments = _imbalanced()
    indices = _uniform().sample(assignments, np.random.default_rng(1))
    assert sorted(_counts(assignments, indices)[list(SIZES)]) == [277, 278, 278, 278]


def test_uniform_replacement_rule() -> None:
    assignments = _imbalanced()
    indices = _uniform().sample(assignments, np.random.default_rng(2))
    # 1000 images > 278 draws: without replacement, so no image repeats.
    big = indices[assignments[indices] == 2]
    assert np.unique(big).size == big.size
    # 100 images <= 278 draws: with replacement, so images repeat.
    medium = indices[assignments[indices] == 5]
    assert np.unique(medium).size < medium.size
    # The single-image cluster is that one image, over and over.
    (single,) = np.flatnonzero(assignments == 9)
    tiny = indices[assignments[indices] == 9]
    assert tiny.size >= 277 and (tiny == single).all()


def test_uniform_is_shuffled() -> None:
    assignments = _imbalanced()
    indices = _uniform().sample(assignments, np.random.default_rng(3))
    # Clusters are interleaved, not laid out one block after another.
    assert np.count_nonzero(np.diff(assignments[indices])) > 500


def test_random_visits_clusters_in_proportion_to_their_size() -> None:
    assignments = _imbalanced()
    indices = _random().sample(assignments, np.random.default_rng(0))
    # reassign = 1: a permutation, every image exactly once.
    np.testing.assert_array_equal(np.sort(indices), np.arange(assignments.size))
    np.testing.assert_array_equal(_counts(assignments, indices), np.bincount(assignments))


def test_random_half_and_repeated_epochs() -> None:
    assignments = _imbalanced()
    half = _random(0.5).sample(assignments, np.random.default_rng(0))
    assert half.size == 556 and np.unique(half).size == 556
    counts = _counts(assignments, half)
    assert counts[2] > 10 * counts[5]  # still proportional to size, unlike the uniform sampler
    triple = _random(2.5).sample(assignments, np.random.default_rng(0))
    assert triple.size == epoch_size(2.5, 1111)
    repeats = np.bincount(triple, minlength=1111)
    assert set(np.unique(repeats)) <= {2, 3}


@pytest.mark.parametrize("make", [_uniform, _random], ids=["uniform", "random"])
def test_deterministic_under_a_seed(make) -> None:
    assignments = _imbalanced()
    sampler = make()
    first = sampler.sample(assignments, np.random.default_rng(42))
    again = sampler.sample(assignments, np.random.default_rng(42))
    other = sampler.sample(assignments, np.random.default_rng(43))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("make", [_uniform, _random], ids=["uniform", "random"])
def test_half_reassign_halves_the_epoch(make) -> None:
    assignments = np.random.default_rng(0).integers(0, 7, size=1000)
    full = make(1.0).sample(assignments, np.random.default_rng(0))
    half = make(0.5).sample(assignments, np.random.default_rng(0))
    assert full.size == 1000 and half.size == 500


@pytest.mark.parametrize("make", [_uniform, _random], ids=["uniform", "random"])
def test_empty_assignments_are_refused(make) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        make().sample(np.array([], dtype=np.int64), np.random.default_rng(0))


def test_released_code_indexing_undoes_the_balance() -> None:
    assignments = _imbalanced()
    rng = np.random.default_rng(4)
    balanced = _counts(assignments, _uniform().sample(assignments, rng))
    quirk = _counts(assignments, _uniform(quirk=True).sample(assignments, rng))
    share = quirk[2] / quirk.sum()
    assert balanced[2] / balanced.sum() < 0.26  # a quarter: four non-empty clusters
    assert 0.8 < share < 0.98  # near the cluster's 90% share of the images, as in the release
    assert quirk[[0, 1, 3, 4, 6, 8]].sum() == 0  # still never an empty cluster
