"""The ``sklearn-kmeans`` clusterer: scikit-learn's Lloyd k-means, a CPU path without faiss."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dcframe.components.builtin_params import SklearnKMeansParams
from dcframe.core.clustering import check_device, check_k, float32_rows, nearest_centroids
from dcframe.core.interfaces import Clusterer, Clustering, Placement
from dcframe.core.params import Params

# scikit-learn's random_state must fit in 32 unsigned bits.
_SKLEARN_SEED_MODULUS = 2**32


class SklearnKMeans(Clusterer):
    """Euclidean k-means with scikit-learn (Lloyd, one run), a CPU path that needs no faiss.

    ``init="random"`` starts from ``k`` distinct random rows, as the paper does. With a zero
    tolerance scikit-learn runs ``iterations`` iterations unless the labels stop changing
    earlier, in which case further iterations would not change anything.

    Empty clusters are NOT handled like faiss (which splits a populated cluster): in each
    iteration scikit-learn moves every empty cluster's centroid onto one of the rows
    farthest from their current centroid (one row per empty cluster, the farthest first),
    and takes that row out of its old cluster's sum. When every row already sits exactly on
    its centroid (more clusters than distinct rows) it leaves the empty clusters as they
    are. Clusters can still end up empty in the final assignment.

    The returned ``objective`` is scikit-learn's ``inertia_``: the sum of squared distances
    of the rows to the returned final centroids, with the returned final assignment. faiss
    instead reports the last iteration's value, computed before its last centroid update,
    so the two are equal only once k-means has converged.
    """

    Params: ClassVar[type[Params]] = SklearnKMeansParams
    params: SklearnKMeansParams

    def assign(self, x: np.ndarray, centroids: np.ndarray, device: str) -> Placement:
        """The nearest centroid, as the returned ``assignments`` are."""
        return nearest_centroids(x, centroids, device)

    def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
        check_device(type(self), device)
        x = float32_rows(x)
        check_k(self.k, x.shape[0])
        from sklearn.cluster import KMeans  # slow import: only when this clusterer runs

        kmeans = KMeans(
            n_clusters=self.k,
            init=self.params.init,
            n_init=1,
            max_iter=self.params.iterations,
            tol=0.0,
            random_state=seed % _SKLEARN_SEED_MODULUS,
            algorithm="lloyd",
        ).fit(x)
        return Clustering(
            assignments=kmeans.labels_.astype(np.int64),
            objective=float(kmeans.inertia_),
            centroids=kmeans.cluster_centers_.astype(np.float32),
        )
