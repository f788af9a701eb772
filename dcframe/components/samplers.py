"""Samplers: which images one epoch's training pass visits, and in which order."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from dcframe.components.builtin_params import SamplerParams, UniformClusterParams
from dcframe.core.interfaces import Sampler
from dcframe.core.params import Params


def epoch_size(reassign: float, num_images: int) -> int:
    """M, the number of samples one epoch trains on: ``reassign * num_images``.

    Rounded half up (so float noise such as ``0.29 * 100 = 28.999...`` still gives 29) and at
    least 1, so a tiny ``reassign`` never produces an empty epoch.
    """
    return max(1, math.floor(reassign * num_images + 0.5))


def _check_assignments(assignments: np.ndarray) -> np.ndarray:
    labels = np.asarray(assignments)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of cluster ids, got {labels.shape}")
    return labels


class UniformClusterSampler(Sampler):
    """Uniform over clusters: every non-empty cluster gets the same share of the epoch (paper).

    With ``N`` images, ``M = epoch_size(reassign, N)`` samples and ``K'`` non-empty clusters,
    each non-empty cluster contributes ``per = M // K' + 1`` draws of its own images, taken
    without replacement when the cluster holds more than ``per`` images and with replacement
    otherwise. The ``K' * per`` draws (always more than ``M``) are shuffled and the first
    ``M`` kept, so every cluster ends up with between ``per - R`` and ``per`` samples, where
    ``R = K' * per - M`` (between 1 and ``K'``) draws are dropped at random. Empty clusters
    are never drawn from and do not dilute the share of the others.

    The intent is to make each cluster equally frequent in training, which is equivalent to
    weighting each image's loss by the inverse size of its cluster, and keeps the network
    from collapsing onto a few giant clusters.

    The released DeepCluster code draws dataset indices this way but then indexes a dataset
    re-ordered cluster by cluster with them, which silently makes the per-cluster draws
    proportional to cluster size again. That quirk is not reproduced by default: the indices
    returned here are dataset indices and are meant to be used as such. Setting
    ``released_code_indexing`` reproduces it, for comparisons with the released code.
    """

    Params: ClassVar[type[Params]] = UniformClusterParams
    params: UniformClusterParams

    def sample(self, assignments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        labels = _check_assignments(assignments)
        num_samples = epoch_size(self.params.reassign, labels.size)
        # Group image indices by cluster id with one sort instead of one scan per cluster.
        by_cluster = np.argsort(labels, kind="stable")
        _, sizes = np.unique(labels, return_counts=True)
        members = np.split(by_cluster, np.cumsum(sizes)[:-1])
        per_cluster = num_samples // len(members) + 1
        draws = [
            rng.choice(images, per_cluster, replace=images.size <= per_cluster)
            for images in members
        ]
        chosen = rng.permutation(np.concatenate(draws))[:num_samples].astype(np.int64)
        if self.params.released_code_indexing:
            # Position p of the cluster-by-cluster re-ordered dataset holds image by_cluster[p].
            return by_cluster[chosen].astype(np.int64)
        return chosen


class RandomSampler(Sampler):
    """Uniform over images, ignoring the clusters: a random permutation (for ablations).

    Returns ``M = epoch_size(reassign, N)`` indices: the first ``M`` of consecutive random
    permutations of all ``N`` images, so with ``M <= N`` no image repeats and with ``M > N``
    every image appears ``M // N`` or ``M // N + 1`` times. Clusters are therefore visited in
    proportion to their size.
    """

    Params: ClassVar[type[Params]] = SamplerParams
    params: SamplerParams

    def sample(self, assignments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        num_images = _check_assignments(assignments).size
        num_samples = epoch_size(self.params.reassign, num_images)
        passes = -(-num_samples // num_images)
        order = np.concatenate([rng.permutation(num_images) for _ in range(passes)])
        return order[:num_samples].astype(np.int64)
