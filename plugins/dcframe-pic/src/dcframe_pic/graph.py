"""The graph PIC walks on: exact k nearest neighbours, Gaussian edge weights, symmetrised.

The neighbour search is the expensive part (``N x N`` squared distances), so it runs on
the clustering device, block by block, so that memory never holds more than one
``block_rows x block_rows`` score matrix. The graph itself (``N x neighbors`` edges, twice)
lives on the CPU in float64, where everything after the search runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Neighbours:
    """Each row's ``count`` nearest other rows, nearest first (a row is never its own).

    Attributes:
        indices: (N, count) int64 row ids.
        squared_distances: (N, count) float32 squared Euclidean distances, ascending per row.
    """

    indices: torch.Tensor
    squared_distances: torch.Tensor


@dataclass(frozen=True)
class Graph:
    """A symmetric weighted graph without self-loops, as a list of directed edges.

    Each undirected edge appears twice (``i -> j`` and ``j -> i``) with the same weight,
    edges sorted by source then target, so that sums over a node's edges need no sparse
    tensor type (torch's are still beta) and come out in a fixed order.

    Attributes:
        size: Number of nodes N.
        sources: (E,) int64 source node of each edge.
        targets: (E,) int64 target node of each edge.
        weights: (E,) float64 edge weight, > 0 unless it underflowed.
    """

    size: int
    sources: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor

    def propagate(self, values: torch.Tensor) -> torch.Tensor:
        """``W @ values``: each node's sum of its neighbours' values times the edge weights."""
        out = torch.zeros(self.size, dtype=values.dtype)
        return out.index_add_(0, self.sources, self.weights * values[self.targets])


def nearest_neighbours(x: torch.Tensor, count: int, block_rows: int) -> Neighbours:
    """Exact ``count`` nearest neighbours of every row of ``x`` among the other rows.

    For each block of query rows, the squared distances to one block of candidate rows
    at a time (``|q|^2 - 2 q.c + |c|^2``, one matrix product) are reduced to their
    ``count`` smallest and merged with the best found so far, so the search holds at most
    ``block_rows x block_rows`` scores whatever N is. Runs on ``x``'s device in float32
    (autocast off); the results come back on the CPU.

    Raises:
        ValueError: ``count`` is not in ``[1, N - 1]`` or ``block_rows`` < 1.
    """
    num_rows = x.shape[0]
    if not 1 <= count < num_rows:
        raise ValueError(f"need 1 <= count < number of rows ({num_rows}), got count={count}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    indices = torch.empty(num_rows, count, dtype=torch.int64)
    distances = torch.empty(num_rows, count, dtype=torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False), torch.no_grad():
        rows = x.float()
        norms = (rows * rows).sum(dim=1)
        for start in range(0, num_rows, block_rows):
            stop = min(start + block_rows, num_rows)
            best_d, best_i = _search_block(rows, norms, start, stop, count, block_rows)
            indices[start:stop] = best_i.cpu()
            distances[start:stop] = best_d.cpu()
    return Neighbours(indices=indices, squared_distances=distances)


def _search_block(
    rows: torch.Tensor, norms: torch.Tensor, start: int, stop: int, count: int, block_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` nearest other rows of rows ``start:stop``, scanning candidate blocks."""
    queries = rows[start:stop]
    shape = (stop - start, count)
    best_d = torch.full(shape, float("inf"), device=rows.device)
    best_i = torch.zeros(shape, dtype=torch.int64, device=rows.device)
    for first in range(0, rows.shape[0], block_rows):
        last = min(first + block_rows, rows.shape[0])
        scores = torch.addmm(norms[first:last][None, :], queries, rows[first:last].T, alpha=-2.0)
        scores.add_(norms[start:stop][:, None]).clamp_(min=0.0)
        if first == start:  # the queries' own block: a row is not its own neighbour
            scores.fill_diagonal_(float("inf"))
        block_d, block_i = torch.topk(scores, min(count, last - first), dim=1, largest=False)
        merged_d = torch.cat([best_d, block_d], dim=1)
        merged_i = torch.cat([best_i, block_i + first], dim=1)
        best_d, position = torch.topk(merged_d, count, dim=1, largest=False)
        best_i = merged_i.gather(1, position)
    return best_d, best_i


def gaussian_graph(neighbours: Neighbours, sigma: float) -> Graph:
    """The symmetrised Gaussian-kernel graph ``W = A + A^T`` of a k-nearest-neighbour list.

    ``A[i, j] = exp(-d(i, j)^2 / sigma^2)`` when ``j`` is one of ``i``'s neighbours, else 0.
    Adding the transpose makes the graph undirected: a pair that are each other's
    neighbours gets twice the weight of a one-way pair, so mutual neighbourhoods pull
    harder. Weights are computed in float64.
    """
    num_rows, count = neighbours.indices.shape
    weights = torch.exp(-neighbours.squared_distances.double() / sigma**2).reshape(-1)
    sources = torch.arange(num_rows).repeat_interleave(count)
    targets = neighbours.indices.reshape(-1)
    # Both directions of every kNN edge; duplicates (mutual neighbours) are summed below.
    both_sources = torch.cat([sources, targets])
    both_targets = torch.cat([targets, sources])
    keys, slot = torch.unique(both_sources * num_rows + both_targets, return_inverse=True)
    summed = torch.zeros(len(keys), dtype=torch.float64)
    summed.index_add_(0, slot, torch.cat([weights, weights]))
    return Graph(
        size=num_rows,
        sources=keys // num_rows,
        targets=keys % num_rows,
        weights=summed,
    )
