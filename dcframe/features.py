"""One epoch's clustering features, and how they are checked and clustered.

By default the rows are gathered on the main process, which runs the clusterer and sends
the assignment to every process (:class:`GatheredFeatures`). A clusterer that declares
``distributed = True`` instead clusters the rows where they were embedded
(:class:`ShardedFeatures`): no process holds the N x d matrix, which is how clustering
scales past one machine's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dcframe.distributed import World
from dcframe.errors import UserError
from dcframe.extraction import FeatureShard
from dcframe.interfaces import Clusterer
from dcframe.progress import Reporter

NOT_FINITE = (
    "the features hold NaN or infinite values: the network's weights have diverged. Start a "
    "new run with a lower optimizer.lr or optimizer.weight_decay (--set run.name=<new-name>)"
)


def check_features(rows: np.ndarray) -> list[str]:
    """Refuse NaN or inf features; warn when every image has the same feature.

    Raises:
        UserError: some feature is not finite (the network's weights have diverged).
    """
    if not np.isfinite(rows).all():
        raise UserError(NOT_FINITE)
    if len(rows) > 1 and float(np.ptp(rows, axis=0).max()) == 0.0:
        return ["feature collapse: every image has the same feature (zero variance)"]
    return []


def _describe(rows: int, dim: int, k: int) -> str:
    return f"clustering {rows} x {dim} into {k} clusters"


@dataclass
class GatheredFeatures:
    """Every readable image's row, on the main process (None elsewhere).

    Attributes:
        matrix: (N, d) rows in dataset order; rows of unreadable images are zero.
        readable: Mask of the readable images, or None when all are.
    """

    matrix: np.ndarray | None
    readable: np.ndarray | None
    world: World

    def _rows(self) -> np.ndarray:
        assert self.matrix is not None
        return self.matrix if self.readable is None else self.matrix[self.readable]

    def check(self) -> list[str]:
        return self.world.run_on_main(lambda: check_features(self._rows()))

    def cluster(
        self, clusterer: Clusterer, seed: int, device: str, reporter: Reporter
    ) -> tuple[np.ndarray, float]:
        """The assignment of every image (-1: unreadable) and the k-means objective."""

        def on_main() -> Any:
            rows = self._rows()
            with reporter.stage(_describe(len(rows), rows.shape[1], clusterer.k)):
                return clusterer.cluster(rows, seed, device)

        clustering = self.world.run_on_main(on_main)
        self.matrix = None  # the N x d matrix is not needed any more
        size = len(clustering.assignments) if self.readable is None else len(self.readable)
        assignment = np.full(size, -1, dtype=np.int64)
        assignment[slice(None) if self.readable is None else self.readable] = clustering.assignments
        return assignment, float(clustering.objective)


@dataclass
class ShardedFeatures:
    """This process's rows, clustered where they are by a distributed clusterer."""

    shard: FeatureShard
    num_images: int
    world: World

    def check(self) -> list[str]:
        if self.world.any(not np.isfinite(self.shard.rows).all()):
            raise UserError(NOT_FINITE)
        return []  # a collapse still shows as a one-cluster assignment

    def cluster(
        self, clusterer: Clusterer, seed: int, device: str, reporter: Reporter
    ) -> tuple[np.ndarray, float]:
        """The assignment of every image (-1: unreadable), on every process, and the objective."""
        total = int(self.world.sum(len(self.shard.index))[0])
        with reporter.stage(_describe(total, self.shard.rows.shape[1], clusterer.k)):
            clustering = clusterer.cluster_shards(self.shard.rows, seed, device, self.world)
        assignment = (
            np.full((self.num_images, 1), -1, dtype=np.int64) if self.world.is_main else None
        )
        labels = np.asarray(clustering.assignments, dtype=np.int64)[:, None]
        self.world.gather_rows(self.shard.index, labels, assignment)
        full = self.world.share_array(None if assignment is None else assignment[:, 0])
        return full, float(clustering.objective)
