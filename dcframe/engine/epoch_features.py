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

from dcframe.core.distributed import World
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Clusterer
from dcframe.core.progress import Reporter
from dcframe.engine.extraction import FeatureShard
from dcframe.engine.metrics import knn_vote_accuracy, leave_one_out_knn, nearest_others

NOT_FINITE = (
    "the features hold NaN or infinite values: the network's weights have diverged. Start a "
    "new run with a lower optimizer.lr or optimizer.weight_decay (--set run.name=<new-name>)"
)


def check_features(rows: np.ndarray) -> None:
    """Refuse NaN or inf features (a collapse is found earlier, in the raw features: see
    :func:`dcframe.engine.extraction.collapse_notes`).

    Raises:
        UserError: some feature is not finite (the network's weights have diverged).
    """
    if not np.isfinite(rows).all():
        raise UserError(NOT_FINITE)


def _describe(rows: int, dim: int, k: int) -> str:
    return f"clustering {rows} x {dim} into {k} clusters"


def distances_to_centroids(
    rows: np.ndarray, assignments: np.ndarray, centroids: np.ndarray, block_rows: int = 65536
) -> np.ndarray:
    """(N,) float32 squared distance of every row to its centroid (what the report's galleries
    sort by), block by block so the temporary stays small."""
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), block_rows):
        stop = start + block_rows
        gap = rows[start:stop] - centroids[assignments[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", gap, gap)
    return out


@dataclass(frozen=True)
class Clustered:
    """One epoch's clustering of every image.

    Attributes:
        assignment: (N,) cluster id per image, -1 for images left out as unreadable.
        objective: The clusterer's k-means objective.
        distances: (N,) squared distance to the assigned centroid (NaN: left out), on the
            main process; None elsewhere.
        centroids: (k, d) the final centroids.
    """

    assignment: np.ndarray
    objective: float
    distances: np.ndarray | None
    centroids: np.ndarray


@dataclass(frozen=True)
class KnnSignal:
    """The per-epoch learning signal: leave-one-out kNN accuracy of the clustering features.

    Attributes:
        k: Neighbours per query (0: off).
        queries: At most this many images are classified (the cost is queries x N x d).
        device: Where the similarities are computed.
    """

    k: int
    queries: int
    device: Any


def _queries(readable: np.ndarray, signal: KnnSignal, rng: np.random.Generator) -> np.ndarray:
    """Positions among the readable images of those the kNN signal classifies."""
    count = int(readable.sum())
    return np.sort(rng.choice(count, min(signal.queries, count), replace=False))


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

    def check(self) -> None:
        self.world.run_on_main(lambda: check_features(self._rows()))

    def knn_accuracy(
        self, labels: np.ndarray, signal: KnnSignal, rng: np.random.Generator
    ) -> float | None:
        """Leave-one-out kNN accuracy of a random sample of the readable images."""

        readable = np.ones(len(labels), bool) if self.readable is None else self.readable
        queries = _queries(readable, signal, rng)

        def on_main() -> float:
            rows = self._rows()
            known = labels[readable]
            return leave_one_out_knn(rows, known, queries, k=signal.k, device=signal.device)

        return self.world.run_on_main(on_main) if signal.k else None

    def cluster(
        self, clusterer: Clusterer, seed: int, device: str, reporter: Reporter
    ) -> Clustered:
        """The assignment of every image (-1: unreadable), the objective and the distances."""

        def on_main() -> Any:
            rows = self._rows()
            with reporter.stage(_describe(len(rows), rows.shape[1], clusterer.k)):
                clustering = clusterer.cluster(rows, seed, device)
            near = distances_to_centroids(rows, clustering.assignments, clustering.centroids)
            return clustering, near

        clustering, near = self.world.run_on_main(on_main)
        size = len(clustering.assignments) if self.readable is None else len(self.readable)
        assignment = np.full(size, -1, dtype=np.int64)
        distances = np.full(size, np.nan, dtype=np.float32)
        where = slice(None) if self.readable is None else self.readable
        assignment[where] = clustering.assignments
        distances[where] = near
        main_only = distances if self.world.is_main else None
        return Clustered(assignment, float(clustering.objective), main_only, clustering.centroids)


@dataclass
class ShardedFeatures:
    """This process's rows, clustered where they are by a distributed clusterer."""

    shard: FeatureShard
    num_images: int
    world: World
    readable: np.ndarray | None = None

    def check(self) -> None:
        if self.world.any(not np.isfinite(self.shard.rows).all()):
            raise UserError(NOT_FINITE)

    def knn_accuracy(
        self, labels: np.ndarray, signal: KnnSignal, rng: np.random.Generator
    ) -> float | None:
        """As :meth:`GatheredFeatures.knn_accuracy`, the same value: every process finds each
        query's nearest rows among its own, and the main process merges the candidates."""
        if not signal.k:
            return None
        world, index = self.world, self.shard.index
        readable = np.ones(self.num_images, bool) if self.readable is None else self.readable
        query_ids = np.flatnonzero(readable)[_queries(readable, signal, rng)]
        queries = np.zeros((len(query_ids), self.shard.rows.shape[1]), np.float32)
        here = np.isin(index, query_ids)
        world.gather_rows(np.searchsorted(query_ids, index[here]), self.shard.rows[here], queries)
        queries = world.share_array(queries if world.is_main else None)
        found, positions = nearest_others(
            self.shard.rows, index, queries, query_ids, signal.k, device=signal.device
        )
        # Every process sends k candidates per query (-inf pads a shard with fewer rows).
        similarity = np.full((len(query_ids), signal.k), -np.inf, np.float32)
        classes = np.zeros((len(query_ids), signal.k), np.int64)
        similarity[:, : found.shape[1]] = found
        classes[:, : found.shape[1]] = labels[index[positions]] if len(index) else 0
        main = world.is_main
        shape = (world.size * len(query_ids), signal.k)
        all_similarity = np.empty(shape, np.float32) if main else None
        all_classes = np.empty(shape, np.int64) if main else None
        slots = world.rank * len(query_ids) + np.arange(len(query_ids))
        world.gather_rows(slots, similarity, all_similarity)
        world.gather_rows(slots, classes, all_classes)

        def merge() -> float:
            assert all_similarity is not None and all_classes is not None
            per_query = (len(query_ids), world.size * signal.k)
            candidates = all_similarity.reshape(world.size, *similarity.shape).transpose(1, 0, 2)
            their = all_classes.reshape(world.size, *classes.shape).transpose(1, 0, 2)
            return knn_vote_accuracy(
                candidates.reshape(per_query), their.reshape(per_query), labels[query_ids], signal.k
            )

        return world.run_on_main(merge)

    def cluster(
        self, clusterer: Clusterer, seed: int, device: str, reporter: Reporter
    ) -> Clustered:
        """The assignment of every image (-1: unreadable) on every process, the objective, and
        the distances on the main process."""
        total = int(self.world.sum(len(self.shard.index))[0])
        with reporter.stage(_describe(total, self.shard.rows.shape[1], clusterer.k)):
            clustering = clusterer.cluster_shards(self.shard.rows, seed, device, self.world)
        main = self.world.is_main
        assignment = np.full((self.num_images, 1), -1, dtype=np.int64) if main else None
        distances = np.full((self.num_images, 1), np.nan, dtype=np.float32) if main else None
        labels = np.asarray(clustering.assignments, dtype=np.int64)
        near = distances_to_centroids(self.shard.rows, labels, clustering.centroids)
        self.world.gather_rows(self.shard.index, labels[:, None], assignment)
        self.world.gather_rows(self.shard.index, near[:, None], distances)
        full = self.world.share_array(None if assignment is None else assignment[:, 0])
        return Clustered(
            full,
            float(clustering.objective),
            None if distances is None else distances[:, 0],
            clustering.centroids,
        )
