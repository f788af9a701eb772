"""``deepcluster``: the method of Caron et al. 2018, the default of every recipe."""

from __future__ import annotations

from typing import Any

import numpy as np

from dcframe.core.interfaces import EpochRecord, Method
from dcframe.core.params import NoParams
from dcframe.engine.protocol import run_epoch


class DeepCluster(Method):
    """DeepCluster: each epoch, k-means of the features, then a new classifier trained on
    the clusters (Caron et al., ECCV 2018)."""

    Params = NoParams

    def check_recipe(self, recipe: Any) -> list[str]:
        augment = recipe.augment
        if augment.large_crops > 1 or augment.small_crops:
            return [
                "augment.large_crops / augment.small_crops: multi-crop views are trained by "
                "method 'deepcluster-v2'; the paper's method takes one view of each image: "
                "--set augment.large_crops=1 --set augment.small_crops=0, or "
                "--set method.name=deepcluster-v2"
            ]
        return []

    def run_epoch(
        self, epoch: int, session: Any, previous: np.ndarray | None, resumed: Any
    ) -> EpochRecord:
        return run_epoch(epoch, session, previous, resumed)
