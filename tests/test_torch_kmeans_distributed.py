"""Distributed torch-kmeans (two gloo processes, each with half the rows) against one process.

Stated tolerance: the per-cluster sums are float32 sums in another order (each process's
share, then the all-reduce), so centroids agree to 1e-5 and objectives to a relative 1e-6;
on these rows (no near-ties) the assignments are identical.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dcframe.components.builtin_params import TorchKMeansParams
from dcframe.components.clusterers import TorchKMeans
from dcframe.components.clusterers.lloyd import lloyd, random_init
from dcframe.components.clusterers.torch_kmeans import generator_for_seed
from dcframe.core.distributed import World

K, SEED = 24, 7


def _rows() -> np.ndarray:
    """Overlapping blobs, plus many copies of a few rows so that clusters empty and split."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 8)) * 3.0
    blobs = centres[rng.integers(0, 12, size=900)] + rng.standard_normal((900, 8))
    copies = np.repeat(rng.standard_normal((3, 8)) * 9.0, 100, axis=0)
    return np.concatenate([blobs, copies]).astype(np.float32)


def _cluster_half(rank: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    world = World.from_environment(use_cuda=False, timeout_s=120)
    rows = world.shard(_rows())
    result = TorchKMeans(TorchKMeansParams(k=K, iterations=15)).cluster_shards(
        rows, SEED, "cpu", world
    )
    np.savez(
        Path(out) / f"rank{rank}.npz",
        assignments=result.assignments,
        centroids=result.centroids,
        objective=result.objective,
    )
    world.close(finished=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_distributed_kmeans_equals_one_process(tmp_path: Path) -> None:
    single = TorchKMeans(TorchKMeansParams(k=K, iterations=15)).cluster(_rows(), SEED, "cpu")
    mp.spawn(_cluster_half, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    halves = [np.load(tmp_path / f"rank{rank}.npz") for rank in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([h["assignments"] for h in halves]), single.assignments
    )
    for half in halves:
        np.testing.assert_allclose(half["centroids"], single.centroids, rtol=0, atol=1e-5)
        assert float(half["objective"]) == pytest.approx(single.objective, rel=1e-6)
    np.testing.assert_array_equal(halves[0]["centroids"], halves[1]["centroids"])
    # The copied rows leave clusters empty along the way, so the splits were exercised.
    x = torch.from_numpy(_rows())
    generator = generator_for_seed(SEED)
    assert sum(lloyd(x, random_init(x, K, generator), 15, generator, 65536).splits) > 0
