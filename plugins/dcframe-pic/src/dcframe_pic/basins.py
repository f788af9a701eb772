"""Clusters from the scores: every node climbs towards a local maximum; one cluster per peak.

Each node points at the graph neighbour that raises the score the most, weighted by the
edge (``W[i, j] * (v[j] - v[i])``, the steepest weighted ascent), or at itself when no
neighbour scores higher. Scores strictly increase along pointers, so following them
always ends at a node that points at itself: a local maximum. The nodes that reach the
same maximum (its basin of attraction) form one cluster.

The functions take any scores with the walk's order and differences up to one positive
factor: the power iteration's lift (:func:`dcframe_pic.power_iteration.power_iteration`),
which keeps the precision the normalised scores lose.
"""

from __future__ import annotations

import torch

from dcframe_pic.graph import Graph


def ascent_pointers(graph: Graph, scores: torch.Tensor) -> torch.Tensor:
    """(N,) int64: each node's steepest weighted-ascent neighbour, or itself at a peak.

    The gain of edge ``i -> j`` is ``W[i, j] * (scores[j] - scores[i])`` and staying put
    gains 0, so a node moves only for a strictly positive gain. Ties between neighbours
    go to the lowest node id, so the pointers depend on nothing but the graph and scores.
    """
    size, sources, targets = graph.size, graph.sources, graph.targets
    gains = graph.weights * (scores[targets] - scores[sources])
    best = torch.zeros(size, dtype=gains.dtype)
    best = best.scatter_reduce(0, sources, gains, reduce="amax", include_self=True)
    winners = (gains > 0) & (gains == best[sources])
    pointers = torch.full((size,), size, dtype=torch.int64)
    pointers = pointers.scatter_reduce(
        0, sources[winners], targets[winners], reduce="amin", include_self=True
    )
    nodes = torch.arange(size)
    return torch.where(pointers == size, nodes, pointers)


def peaks_reached(pointers: torch.Tensor) -> torch.Tensor:
    """(N,) int64: the node each node ends at by following the pointers (pointer jumping).

    Each round replaces every pointer by its target's pointer, halving the remaining path,
    so ``log2`` of the longest climb rounds suffice.
    """
    reached = pointers.clone()
    while True:
        further = reached[reached]
        if torch.equal(further, reached):
            return reached
        reached = further


def compact_labels(labels: torch.Tensor) -> torch.Tensor:
    """Labels renumbered ``0..C-1`` in increasing order of the old labels."""
    return torch.unique(labels, return_inverse=True)[1]


def basin_labels(graph: Graph, scores: torch.Tensor) -> torch.Tensor:
    """(N,) int64 cluster ids ``0..C-1``, one per local maximum, numbered by its node id."""
    return compact_labels(peaks_reached(ascent_pointers(graph, scores)))


def distribute_singletons(labels: torch.Tensor, neighbour_indices: torch.Tensor) -> torch.Tensor:
    """Move each node that is alone in its cluster into the cluster of its nearest neighbour
    that is not alone, when one of its ``neighbors`` nearest neighbours is not.

    Whether a neighbour is alone is judged on the labels given, before any move, so the
    result does not depend on an order of the nodes. Singletons whose neighbours are all
    singletons too stay where they are. Returns labels renumbered ``0..C'-1`` (same order).
    """
    sizes = torch.bincount(labels)
    alone = sizes[labels] == 1
    lonely = torch.nonzero(alone).squeeze(1)
    candidates = neighbour_indices[lonely]
    usable = ~alone[candidates]
    has_home = usable.any(dim=1)
    # argmax of a boolean row is its first True: the nearest usable neighbour.
    nearest = candidates.gather(1, usable.byte().argmax(dim=1, keepdim=True)).squeeze(1)
    moved = labels.clone()
    moved[lonely[has_home]] = labels[nearest[has_home]]
    return compact_labels(moved)
