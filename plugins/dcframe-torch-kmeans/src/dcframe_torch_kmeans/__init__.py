"""dcframe-torch-kmeans: a k-means clusterer for dcframe written in plain torch.

Registered under the name ``torch-kmeans`` in the ``dcframe.clusterers`` entry-point group.
The algorithm itself lives in :mod:`dcframe_torch_kmeans.kmeans` and works on any tensors.
"""

from __future__ import annotations

from dcframe_torch_kmeans.clusterer import TorchKMeans, TorchKMeansParams, generator_for_seed
from dcframe_torch_kmeans.kmeans import (
    SPLIT_EPS,
    KMeansRun,
    NearestCentroids,
    kmeans_plus_plus_init,
    lloyd,
    random_init,
    split_empty_clusters,
)

__all__ = [
    "SPLIT_EPS",
    "KMeansRun",
    "NearestCentroids",
    "TorchKMeans",
    "TorchKMeansParams",
    "generator_for_seed",
    "kmeans_plus_plus_init",
    "lloyd",
    "random_init",
    "split_empty_clusters",
]
