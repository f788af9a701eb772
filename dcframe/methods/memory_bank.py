"""DeepCluster-v2's memory bank: each image's projections from its last training step.

There is no feature-extraction pass in DeepCluster-v2: while it trains, the method keeps the
L2-normalised projections of every image's large views, and the next epoch clusters those.
Each process keeps the rows of its own contiguous block of images (whichever process trained
on an image, its rows travel to the block's owner at every step), so that the bank is split
over the processes as the dataset grows, and a distributed clusterer clusters it where it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dcframe.core.distributed import World
from dcframe.core.interfaces import Clusterer
from dcframe.engine.epoch_features import GatheredFeatures, ShardedFeatures
from dcframe.engine.extraction import FeatureShard


class MemoryBank:
    """(N, views, dim) projections, of which this process keeps its block's rows.

    Attributes:
        own: The dataset indices of this process's block.
        rows: (len(own), views, dim) float32 projections.
        filled: Whether every readable image has rows yet (after the first epoch's pass).
    """

    def __init__(self, num_images: int, views: int, dim: int, world: World) -> None:
        self.num_images, self.views, self.dim, self.world = num_images, views, dim, world
        self.own = world.shard(np.arange(num_images))
        self.start = int(self.own[0]) if len(self.own) else 0
        self.rows = np.zeros((len(self.own), views, dim), np.float32)
        self.filled = False

    def write(self, index: np.ndarray, projections: np.ndarray) -> None:
        """Rows for images ``index``: (len(index), views, dim). A collective: every process
        calls it at the same step, and keeps the rows of its block from all of them."""
        every_index, every_row = self.world.all_rows(index, projections.reshape(len(index), -1))
        mine = (every_index >= self.start) & (every_index < self.start + len(self.own))
        self.rows[every_index[mine] - self.start] = every_row[mine].reshape(-1, *self.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return self.views, self.dim

    def features(
        self, view: int, readable: np.ndarray | None, clusterer: Clusterer
    ) -> GatheredFeatures | ShardedFeatures:
        """The bank's rows of one view, ready for ``clusterer``: left where they are for a
        distributed clusterer, else gathered on the main process."""
        if clusterer.distributed and self.world.distributed:
            keep = slice(None) if readable is None else readable[self.own]
            shard = FeatureShard(self.own[keep], self.rows[keep, view])
            return ShardedFeatures(shard, self.num_images, self.world, readable)
        matrix = self._gathered(self.rows[:, view])
        return GatheredFeatures(matrix, readable, self.world)

    def _gathered(self, rows: np.ndarray) -> np.ndarray | None:
        """Every process's block of 2-D ``rows``, in dataset order, on the main process."""
        out = np.zeros((self.num_images, rows.shape[1]), np.float32) if self.world.is_main else None
        self.world.gather_rows(self.own, rows, out)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The whole bank on the main process (a collective), for the checkpoint."""
        whole = self._gathered(self.rows.reshape(len(self.own), -1))
        rows = None if whole is None else torch.from_numpy(whole)
        return {"rows": rows, "filled": self.filled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        whole = state["rows"].numpy().reshape(self.num_images, *self.shape)
        self.rows[:] = whole[self.own]
        self.filled = bool(state["filled"])
