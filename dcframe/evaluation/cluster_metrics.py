"""k-means on frozen features, scored against the true classes.

Features go through DeepCluster's own chain (PCA-whitening then L2 normalisation, the
registered ``pca`` and ``l2`` preprocessors) and are clustered with the registered
``faiss-kmeans`` (``torch-kmeans``, the same algorithm from the same initial rows, when
faiss is not installed), k = the number of classes by default. Scores:

* ``nmi``: normalised mutual information, geometric normalisation (the paper's);
* ``ami``: adjusted mutual information (scikit-learn's default arithmetic normalisation);
* ``ari``: adjusted Rand index;
* ``accuracy``: clustering accuracy, the fraction of images whose cluster maps to their
  class under the best one-to-one cluster -> class matching (Hungarian algorithm).

All four are fractions in [0, 1] (ARI can dip below 0).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from dcframe.core import kinds
from dcframe.core.interfaces import Clusterer, Preprocessor
from dcframe.data.transforms import clustering_transform
from dcframe.engine.metrics import nmi
from dcframe.evaluation.data import EvalData, Split
from dcframe.evaluation.features import FrozenFeatures
from dcframe.evaluation.options import ClusterOptions
from dcframe.evaluation.runtime import Runtime
from dcframe.evaluation.store import FeatureCache


def clustering_accuracy(labels: np.ndarray, assignments: np.ndarray) -> float:
    """Best fraction of items whose cluster is matched to their class, one-to-one.

    Builds the cluster x class contingency table and finds the matching of maximal total
    count with the Hungarian algorithm; with more clusters than classes (or fewer), the
    unmatched ones count as errors.
    """
    _, classes = np.unique(labels, return_inverse=True)
    _, clusters = np.unique(assignments, return_inverse=True)
    table = np.zeros((clusters.max() + 1, classes.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, classes), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def cluster_scores(labels: np.ndarray, assignments: np.ndarray) -> dict[str, float]:
    """NMI (geometric), AMI, ARI and clustering accuracy of ``assignments`` vs ``labels``."""
    return {
        "nmi": nmi(labels, assignments),
        "ami": float(adjusted_mutual_info_score(labels, assignments)),
        "ari": float(adjusted_rand_score(labels, assignments)),
        "accuracy": clustering_accuracy(labels, assignments),
    }


def kmeans_clusterer(k: int) -> Clusterer:
    """The registered faiss k-means, or the torch one when faiss is not installed."""
    name = "faiss-kmeans" if importlib.util.find_spec("faiss") else "torch-kmeans"
    entry = kinds.clusterers.get(name)
    return entry.cls(entry.params_model.model_validate({"k": k}))


def preprocessing(pca_dim: int, num_rows: int, dim: int) -> tuple[list[Preprocessor], int]:
    """DeepCluster's PCA-whitening + L2 chain, the PCA capped at the feature width and the
    number of rows (``pca_dim`` 0: L2 only); also returns the PCA dims used (0: none)."""
    steps: list[Preprocessor] = []
    used = min(pca_dim, dim, num_rows)
    if used:
        pca = kinds.preprocessors.get("pca")
        steps.append(pca.cls(pca.params_model.model_validate({"dim": used})))
    l2 = kinds.preprocessors.get("l2")
    steps.append(l2.cls(l2.params_model.model_validate({})))
    return steps, used


def cluster_layer(
    x: np.ndarray, labels: np.ndarray, k: int, pca_dim: int, seed: int
) -> dict[str, Any]:
    """Preprocess, cluster and score one layer's features (rows aligned with ``labels``)."""
    steps, used = preprocessing(pca_dim, *x.shape)
    for step in steps:
        step.fit(x)
        x = step.transform(x)
    clusterer = kmeans_clusterer(k)
    clustering = clusterer.cluster(x, seed, "cpu")
    return {
        "pca_dim": used,
        "k": k,
        "clusterer": type(clusterer).__name__,
        **cluster_scores(labels, clustering.assignments),
    }


def evaluate_clusters(
    features: FrozenFeatures, data: EvalData, options: ClusterOptions, runtime: Runtime
) -> dict[str, dict[str, Any]]:
    """Cluster metrics of every layer on the chosen split(s), centre-crop view.

    Features go through an on-disk :class:`~dcframe.evaluation.store.FeatureCache`, so RAM
    holds one layer's features at a time (k-means needs all rows of a layer at once).
    """
    splits: list[Split] = {
        "train": [data.train],
        "val": [data.val],
        "all": [data.train, data.val],
    }[options.split]
    view = clustering_transform(features.backbone.input_size)
    labels = np.concatenate([s.labels for s in splits])
    k = options.k or data.num_classes
    results = {}
    with FeatureCache(runtime.cache_dir) as cache:
        parts = [
            cache.extract(features, s, view, runtime, f"features {i + 1}/{len(splits)}")
            for i, s in enumerate(splits)
        ]
        for name in features.layers:
            x = np.concatenate([p[name].read().numpy() for p in parts])
            runtime.reporter.info(
                f"clustering {name}: {x.shape[0]} x {x.shape[1]} into {k} clusters"
            )
            results[name] = {
                "dim": features.dims[name],
                "pooling": features.pooling[name],
                **cluster_layer(x, labels, k, options.pca_dim, runtime.seed),
            }
    return results
