"""PIC on small real data: blobs, the graph against brute force, the walk, basins, mapping to k."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dcframe_pic import (
    PIC,
    Graph,
    Neighbours,
    PICParams,
    ascent_pointers,
    distribute_singletons,
    gaussian_graph,
    nearest_neighbours,
    peaks_reached,
    power_iteration,
    scores,
    to_k_clusters,
)
from pydantic import ValidationError

from dcframe import registries
from dcframe.plugin import UserError, check_component

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits.toml"


def _two_blobs(dim: int = 2, size: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Two unit Gaussian blobs 20 standard deviations apart, and which blob each row is in."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(size, dim)), rng.normal(size=(size, dim)) + 20.0])
    return x.astype(np.float32), np.repeat([0, 1], size)


def _graph(size: int, edges: list[tuple[int, int, float]]) -> Graph:
    """An undirected graph from (i, j, weight) edges, each stored in both directions."""
    both = sorted([(i, j, w) for i, j, w in edges] + [(j, i, w) for i, j, w in edges])
    sources, targets, weights = zip(*both, strict=True)
    return Graph(
        size=size,
        sources=torch.tensor(sources),
        targets=torch.tensor(targets),
        weights=torch.tensor(weights, dtype=torch.float64),
    )


# ----------------------------------------------------------------------- the component


# The two tests docs/plugins.md shows, as written there.
def test_contract() -> None:
    check_component("clusterer", "pic")


def test_found_through_the_installed_entry_point() -> None:
    origin = registries.clusterers.get("pic").origin
    assert origin.distribution == "dcframe-pic"
    assert registries.clusterers.get("pic").cls is PIC


@pytest.mark.parametrize(
    "bad",
    [
        {"neighbors": 0},
        {"sigma": 0.0},
        {"sigma": -1.0},
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"iterations": 0},
        {"block_rows": 0},
        {"neighbors": "5"},  # strict: no coercion from strings
        {"distribute_singletons": 1},
        {"tolerance": 1e-4},  # closed: unknown keys are errors
    ],
)
def test_out_of_range_parameters_are_refused_naming_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as error:
        PICParams.model_validate({"k": 5, **bad})
    assert next(iter(bad)) in str(error.value)


def test_two_far_apart_blobs_are_found_exactly() -> None:
    x, truth = _two_blobs()
    result = PIC(PICParams(k=2, neighbors=10, sigma=1.0, alpha=0.5)).run(x)
    assert result.found == 2 and result.moved == 0
    labels = result.assignments.numpy()
    assert (labels == truth).all() or (labels == 1 - truth).all()
    for blob in (0, 1):
        centroid = result.centroids[labels[truth == blob][0]].numpy()
        np.testing.assert_allclose(centroid, x[truth == blob].mean(0), atol=1e-5)


def test_fewer_clusters_than_k_leave_empty_ids_with_zero_centroids_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, _ = _two_blobs()
    with caplog.at_level(logging.WARNING, logger="dcframe_pic"):
        result = PIC(PICParams(k=5, neighbors=10, sigma=1.0, alpha=0.5)).cluster(x, 0, "cpu")
    assert set(result.assignments.tolist()) == {0, 1}
    assert result.centroids.shape == (5, 2) and not result.centroids[2:].any()
    assert "pic found 2 clusters for clusterer.k = 5" in caplog.text
    # The uniform sampler (the paper's) never draws from the empty ids.
    sampler = registries.samplers.get("uniform")
    drawn = sampler.cls(sampler.params_model()).sample(result.assignments, np.random.default_rng(0))
    assert set(result.assignments[drawn].tolist()) == {0, 1}


def test_objective_is_the_sum_of_squared_distances_to_the_cluster_means() -> None:
    x, _ = _two_blobs(dim=8)
    result = PIC(PICParams(k=4)).cluster(x, 0, "cpu")
    means = np.stack([x[result.assignments == c].mean(0) for c in range(4)])
    np.testing.assert_allclose(result.centroids, means, rtol=1e-5, atol=1e-5)
    expected = ((x.astype(np.float64) - means[result.assignments]) ** 2).sum()
    assert result.objective == pytest.approx(expected, rel=1e-5)


def test_the_seed_is_ignored_and_the_block_size_changes_nothing() -> None:
    x, _ = _two_blobs(dim=8)
    first = PIC(PICParams(k=4)).cluster(x, 0, "cpu")
    other_seed = PIC(PICParams(k=4)).cluster(x, 12345, "cpu")
    tiny_blocks = PIC(PICParams(k=4, block_rows=7)).cluster(x.astype(np.float64), 0, "cpu")
    for again in (other_seed, tiny_blocks):
        np.testing.assert_array_equal(first.assignments, again.assignments)
        np.testing.assert_allclose(first.centroids, again.centroids, atol=1e-6)


def test_k_larger_than_rows_is_a_user_error_naming_clusterer_k() -> None:
    x, _ = _two_blobs()
    with pytest.raises(UserError, match=r"clusterer\.k"):
        PIC(PICParams(k=121)).cluster(x, 0, "cpu")


def test_too_many_neighbours_for_the_rows_is_a_user_error_naming_the_fix() -> None:
    x, _ = _two_blobs(size=3)
    with pytest.raises(UserError, match=r"clusterer\.neighbors <= 5"):
        PIC(PICParams(k=2, neighbors=6)).cluster(x, 0, "cpu")


def test_a_sigma_that_zeroes_every_weight_is_a_user_error() -> None:
    x, _ = _two_blobs(dim=8)  # nearest neighbours about 2 apart: exp(-4 / 0.01^2) is 0
    with pytest.raises(UserError, match=r"raise clusterer\.sigma"):
        PIC(PICParams(k=2, sigma=0.01)).cluster(x, 0, "cpu")


def test_non_finite_rows_are_refused() -> None:
    x, _ = _two_blobs()
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        PIC(PICParams(k=2)).cluster(x, 0, "cpu")


def test_unavailable_device_is_a_user_error() -> None:
    assert set(PIC.available_devices()) <= set(PIC.devices)
    x, _ = _two_blobs()
    for device in set(PIC.devices) - set(PIC.available_devices()):
        with pytest.raises(UserError, match="available devices"):
            PIC(PICParams(k=2)).cluster(x, 0, device)


# ------------------------------------------------------------------------ the graph


@pytest.mark.parametrize("block_rows", [17, 64, 1000])
def test_blocked_neighbours_match_brute_force(block_rows: int) -> None:
    x = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    found = nearest_neighbours(torch.from_numpy(x), 7, block_rows)
    squared = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(squared, np.inf)
    expected = np.argsort(squared, axis=1)[:, :7]
    np.testing.assert_array_equal(found.indices.numpy(), expected)
    np.testing.assert_allclose(
        found.squared_distances.numpy(), np.take_along_axis(squared, expected, 1), rtol=1e-4
    )


def test_gaussian_graph_is_symmetric_and_doubles_mutual_neighbours() -> None:
    # 0 and 1 are each other's nearest; 2's nearest is 1, but 1 does not list 2.
    neighbours = Neighbours(
        indices=torch.tensor([[1], [0], [1]]),
        squared_distances=torch.tensor([[0.04], [0.04], [0.09]]),
    )
    graph = gaussian_graph(neighbours, sigma=0.2)
    dense = torch.zeros(3, 3, dtype=torch.float64)
    dense[graph.sources, graph.targets] = graph.weights
    one_way, mutual = np.exp(-0.09 / 0.04), 2 * np.exp(-1.0)
    expected = [[0, mutual, 0], [mutual, 0, one_way], [0, one_way, 0]]
    np.testing.assert_allclose(dense.numpy(), expected, rtol=1e-6)


# ------------------------------------------------------------------ walk and basins


def test_lift_gives_the_literal_power_iteration_scores() -> None:
    rng = np.random.default_rng(2)
    edges = [(i, j, float(rng.uniform(0.1, 1.0))) for i in range(8) for j in range(i) if i - j < 3]
    graph = _graph(8, edges)
    dense = np.zeros((8, 8))
    for i, j, w in edges:
        dense[i, j] = dense[j, i] = w
    v = np.full(8, 1 / 8)
    for _ in range(30):
        v = 0.3 * dense @ v + 0.7 / 8
        v /= v.sum()
    np.testing.assert_allclose(scores(power_iteration(graph, 0.3, 30)).numpy(), v, rtol=1e-12)


def test_lift_keeps_differences_that_literal_scores_round_away() -> None:
    # A path 0-1-2 with weights around exp(-40): literal float64 scores would all tie at 1/3.
    graph = _graph(3, [(0, 1, np.exp(-40.0)), (1, 2, np.exp(-41.0))])
    lift = power_iteration(graph, 0.001, 200)
    assert lift[1] > lift[0] > lift[2] > 0
    assert torch.unique(scores(lift)).numel() == 1  # what the literal iteration would see


def test_pointers_climb_the_steepest_weighted_ascent_to_the_peaks() -> None:
    # Path 0-1-2-3-4 with scores rising to 2 and to 4, 3 a valley.
    graph = _graph(5, [(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0), (3, 4, 1.0)])
    lift = torch.tensor([1.0, 2.0, 5.0, 0.5, 3.0], dtype=torch.float64)
    pointers = ascent_pointers(graph, lift)
    # 3 sees gains 4.5 (to 2) and 2.5 (to 4): it goes to 2.
    assert pointers.tolist() == [1, 2, 2, 2, 4]
    assert peaks_reached(pointers).tolist() == [2, 2, 2, 2, 4]


def test_edge_weight_scales_the_gain() -> None:
    # Node 0 between a higher node behind a weak edge and a lower one behind a strong edge.
    graph = _graph(3, [(0, 1, 0.1), (0, 2, 1.0)])
    lift = torch.tensor([1.0, 5.0, 2.0], dtype=torch.float64)
    assert ascent_pointers(graph, lift)[0] == 2  # 1.0 * (2 - 1) beats 0.1 * (5 - 1)


def test_singletons_join_their_nearest_neighbour_that_is_not_alone() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 3, 4])  # 2 of size 2; 1, 3, 4 alone
    neighbours = torch.tensor([[1, 2], [0, 2], [5, 4], [4, 0], [3, 0], [6, 3], [5, 2]])
    moved = distribute_singletons(labels, neighbours)
    # Row 2: nearest 5 is alone, next 4 is in cluster 2 -> joins 2. Row 5: 6 alone, 3 in 2.
    # Row 6: its neighbours 5 and 2 are both alone (before any move) -> stays.
    assert moved.tolist() == [0, 0, 1, 1, 1, 1, 2]


def test_more_clusters_than_k_keep_the_largest_and_move_the_rest_to_the_nearest() -> None:
    # Clusters of sizes 3 (near 0), 4 (near 10), 1 (at 9), 2 (near 1) on a line.
    x = torch.tensor([[0.0], [0.2], [-0.2], [10.0], [10.1], [9.9], [10.0], [9.0], [1.0], [1.2]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 3, 3])
    result = to_k_clusters(x, labels, k=2, block_rows=3)
    # By size: cluster 1 -> id 0, cluster 0 -> id 1; 9.0 joins id 0, 1.0 and 1.2 join id 1.
    assert result.assignments.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    assert (result.found, result.moved) == (4, 3)
    np.testing.assert_allclose(result.centroids.numpy(), [[49.0 / 5], [2.2 / 5]], rtol=1e-6)


def test_equal_sizes_are_ordered_by_old_id() -> None:
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    result = to_k_clusters(x, torch.tensor([2, 0, 1, 2]), k=3, block_rows=2)
    assert result.assignments.tolist() == [0, 1, 2, 0]


# ------------------------------------------------------------------------ a real run


@pytest.mark.slow
def test_the_digits_example_runs_end_to_end(tmp_path: Path) -> None:
    """The example recipe, one epoch on the 360 test digits with k = 20: a few seconds."""
    overrides = [
        f'run.output_dir="{tmp_path}"',
        "run.epochs=1",
        'data.split="test"',
        "clusterer.k=20",
    ]
    command = [sys.executable, "-m", "dcframe", "run", str(EXAMPLE), "--quiet"]
    for override in overrides:
        command += ["--set", override]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    run = tmp_path / "digits-pic"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert len(metrics) == 1 and metrics[0]["nmi_vs_labels"] > 0.2
    assert "dcframe-pic" in json.loads((run / "versions.json").read_text())["plugins"]
