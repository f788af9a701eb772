"""dcframe-pic: Power Iteration Clustering (PIC) as a dcframe clusterer, in plain torch.

Registered under the name ``pic`` in the ``dcframe.clusterers`` entry-point group. The
steps live in their own modules and work on plain tensors: :mod:`.graph` (neighbours and
edge weights), :mod:`.power_iteration` (the scores), :mod:`.basins` (clusters from the
scores) and :mod:`.fixed_k` (from PIC's own number of clusters to ``k``).
"""

from __future__ import annotations

from dcframe_pic.basins import (
    ascent_pointers,
    basin_labels,
    distribute_singletons,
    peaks_reached,
)
from dcframe_pic.clusterer import PIC, PICParams
from dcframe_pic.fixed_k import FixedK, cluster_means, nearest_centroid, to_k_clusters
from dcframe_pic.graph import Graph, Neighbours, gaussian_graph, nearest_neighbours
from dcframe_pic.power_iteration import power_iteration, scores

__all__ = [
    "PIC",
    "FixedK",
    "Graph",
    "Neighbours",
    "PICParams",
    "ascent_pointers",
    "basin_labels",
    "cluster_means",
    "distribute_singletons",
    "gaussian_graph",
    "nearest_centroid",
    "nearest_neighbours",
    "peaks_reached",
    "power_iteration",
    "scores",
    "to_k_clusters",
]
