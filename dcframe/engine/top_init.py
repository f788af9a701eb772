"""Each epoch's new top layer set from the clusters (``optimizer.top_init = "centroids"``).

The paper draws the new top layer from N(0, 0.01): the first steps of every epoch then
push gradients of a classifier that knows nothing through the trunk, a disruption the
authors point at themselves. DeepCluster-v2 (Caron et al. 2020) avoids it by classifying
with the centroids directly. Here the top layer keeps its place and its shape; row ``c`` is
set from the mean of cluster ``c``'s top-layer inputs (the clustering features after the
head activation, which the extraction pass computes anyway): a logit is the cosine of an
input with its cluster's mean, both centred on the mean of all inputs, times the input's
centred norm. The layer so starts out ranking the clusters k-means just found, and the
gradients it sends into the trunk pull images toward their cluster instead of in random
directions.

The rows keep the norm the paper's init gives them on average, ``0.01 sqrt(dim)``: the
top layer's weights scale every gradient the trunk receives, and rows scaled up to make
confident predictions (cosine / 0.1, as DeepCluster-v2 does on normalised features) made
the first steps diverge.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from dcframe.core.distributed import World

# The paper's top-layer init, N(0, 0.01): a row of dim such weights has norm ~ 0.01 sqrt(dim).
PAPER_STD = 0.01


class HeadInputs:
    """This process's clustering features of one extraction pass, kept as float16 (the
    memory is images x feature_dim x 2 bytes: 100 MB for CIFAR-10 at fc_dim 1024)."""

    def __init__(self) -> None:
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []

    def clear(self) -> None:
        self._chunks = []

    def add(self, index: np.ndarray, features: np.ndarray) -> None:
        self._chunks.append((np.array(index, dtype=np.int64), features.astype(np.float16)))

    def top_layer(
        self,
        assignment: np.ndarray,
        k: int,
        dim: int,
        activation: Callable[[torch.Tensor], torch.Tensor],
        world: World,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of a ``Linear(dim, k)`` predicting ``assignment``, from every
        process's images (a collective) and the same on all.

        Row ``c`` is ``0.01 sqrt(dim) (m_c - m) / |m_c - m|`` and bias ``c`` is minus its
        product with ``m``, where ``m_c`` is cluster ``c``'s mean input and ``m`` the mean
        of all. Rows of empty clusters are zero (the
        sampler draws no image of them); images assigned -1 (left out as unreadable)
        count for no cluster.
        """
        sums = torch.zeros(k, dim, dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.float64)
        for index, rows in self._chunks:
            labels = torch.from_numpy(assignment[index])
            inputs = activation(torch.from_numpy(rows).float()).double()
            kept = labels >= 0
            sums.index_add_(0, labels[kept], inputs[kept])
            counts += torch.bincount(labels[kept], minlength=k).double()
        sums, counts = (world.sum_tensor(t.to(world.device)).cpu() for t in (sums, counts))
        centre = sums.sum(0) / max(float(counts.sum()), 1.0)
        # Centred: after a ReLU every input points into the same orthant, and uncentred
        # cosines with the means would all be close to 1 (a near-uniform ranking).
        offsets = sums / counts.clamp(min=1)[:, None] - centre
        offsets[counts == 0] = 0
        directions = offsets / offsets.norm(dim=1, keepdim=True).clamp(min=1e-12)
        weight = directions * (PAPER_STD * math.sqrt(dim))
        return weight.float(), (-weight @ centre).float()
