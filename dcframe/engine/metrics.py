"""Run metrics: normalized mutual information, cluster-size statistics, the kNN signal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch


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


#: Queries scored at once, bounding the (queries x rows) similarity matrix.
QUERY_CHUNK = 1024


def most_similar(
    chunks: Iterable[torch.Tensor],
    queries: torch.Tensor,
    k: int,
    *,
    device: str | torch.device = "cpu",
    query_chunk: int = QUERY_CHUNK,
    ids: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The ``k`` rows most similar (cosine) to each query, over rows given chunk by chunk.

    Only one chunk of rows (e.g. read from disk) and one chunk of queries are compared at
    a time; each chunk is merged into a running top-k, which ends as the top-k over all
    rows (the same neighbours as one big ``topk``, up to the order of equal similarities).

    Args:
        chunks: The rows, in order, as consecutive (n_i, d) chunks.
        queries: (Q, d) rows to find neighbours for.
        k: Neighbours per query (at most the number of rows).
        device: Where the similarities are computed.
        query_chunk: Queries compared at once.
        ids: (row ids, query ids): a row never neighbours the query with its id (a
            leave-one-out search of the rows among themselves).

    Returns:
        (Q, k) similarities on ``device``, the positions of those rows among all rows, and
        the number of rows; missing neighbours (a query's own row) have similarity -inf.
    """
    unit_queries = torch.nn.functional.normalize(queries.float().to(device), dim=1)
    best = torch.full((len(queries), k), -torch.inf, device=device)
    best_index = torch.zeros((len(queries), k), dtype=torch.long, device=device)
    row_ids, query_ids = (None, None) if ids is None else (t.to(device) for t in ids)
    start = 0
    for chunk in chunks:
        memory = torch.nn.functional.normalize(chunk.float().to(device), dim=1)
        rows = torch.arange(start, start + len(memory), device=device)
        for q in range(0, len(queries), query_chunk):
            span = slice(q, q + query_chunk)
            similarity = unit_queries[span] @ memory.T
            if row_ids is not None and query_ids is not None:
                own = row_ids[None, start : start + len(memory)] == query_ids[span, None]
                similarity.masked_fill_(own, -torch.inf)
            candidates = torch.cat([best[span], similarity], dim=1)
            indices = torch.cat([best_index[span], rows.expand_as(similarity)], dim=1)
            best[span], position = candidates.topk(k, dim=1)
            best_index[span] = indices.gather(1, position)
        start += len(memory)
    return best, best_index, start


def nearest_others(
    rows: np.ndarray,
    row_ids: np.ndarray,
    queries: np.ndarray,
    query_ids: np.ndarray,
    k: int,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most similar (cosine) to each query, leaving out the query itself.

    Rows and queries carry ids (dataset indices): a row with the query's id is never its
    neighbour. Several sets of rows (the shards of a distributed run) can be searched apart
    and their candidates merged with :func:`knn_vote_accuracy`.

    Returns:
        (Q, k') similarities and the positions in ``rows`` of those neighbours, k' = min(k,
        rows); similarities of missing neighbours are -inf.
    """
    values, positions, _ = most_similar(
        [torch.from_numpy(rows)],
        torch.from_numpy(queries),
        min(k, len(rows)),
        device=device,
        ids=(torch.as_tensor(row_ids), torch.as_tensor(query_ids)),
    )
    return values.cpu().numpy(), positions.cpu().numpy()


def weighted_votes(
    similarity: torch.Tensor, classes: torch.Tensor, num_classes: int, temperature: float
) -> torch.Tensor:
    """The kNN vote of ``dcframe eval knn`` and the per-epoch signal: a neighbour of
    similarity s votes exp(s / temperature) for its class; (Q, num_classes) summed votes,
    in the dtype and on the device of ``similarity``."""
    weights = (similarity / temperature).exp()
    votes = torch.zeros(len(similarity), num_classes, dtype=weights.dtype, device=weights.device)
    return votes.scatter_add_(1, classes, weights)


def knn_vote_accuracy(
    similarity: np.ndarray,
    neighbour_labels: np.ndarray,
    labels: np.ndarray,
    k: int,
    temperature: float = 0.07,
) -> float:
    """Accuracy of the weighted vote of ``dcframe eval knn``: each query takes its ``k`` most
    similar candidates, and a candidate of similarity s votes exp(s / temperature) for its
    class.

    Args:
        similarity: (Q, C) similarities of C candidate neighbours per query (-inf: none).
        neighbour_labels: (Q, C) their classes.
        labels: (Q,) the queries' classes.
    """
    values = torch.from_numpy(similarity)
    top, index = values.topk(min(k, values.shape[1]), dim=1)
    classes = torch.from_numpy(neighbour_labels).gather(1, index)
    num_classes = int(max(neighbour_labels.max(initial=0), labels.max(initial=0))) + 1
    votes = weighted_votes(top.double(), classes, num_classes, temperature)
    return float((votes.argmax(1).numpy() == labels).mean()) if len(labels) else 0.0


def leave_one_out_knn(
    rows: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    *,
    k: int = 20,
    temperature: float = 0.07,
    device: str | torch.device = "cpu",
) -> float:
    """Accuracy of weighted kNN (cosine, ``dcframe eval knn``'s vote) of rows ``queries``,
    each classified by its ``k`` most similar *other* rows: the per-epoch learning signal.

    Args:
        rows: (N, d) features.
        labels: (N,) class ids.
        queries: Positions of the rows to classify (a sample bounds the N x queries cost).
        device: Where the similarities are computed (a GPU when the run has one).
    """
    ids = np.arange(len(rows))
    values, positions = nearest_others(rows, ids, rows[queries], queries, k, device=device)
    return knn_vote_accuracy(values, labels[positions], labels[queries], k, temperature)
