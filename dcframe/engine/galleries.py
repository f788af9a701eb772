"""Which clusters a gallery shows (the report's, TensorBoard's), and which of their images.

A cluster is shown by the images closest to its centroid first (the most typical members),
then a few random other members (how varied it is). Runs made before dcframe saved the
centroid distances show random members only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

CLOSEST = 8
RANDOM_MEMBERS = 4
CLUSTERS_PER_GALLERY = 8


@dataclass(frozen=True)
class Shown:
    """The images shown for one cluster.

    Attributes:
        cluster: Cluster id.
        size: Images in the cluster.
        members: Dataset indices, the ``closest`` nearest to the centroid first (nearest
            first), then random other members.
        closest: How many of ``members`` are nearest ones (0 without distances).
    """

    cluster: int
    size: int
    members: np.ndarray
    closest: int


def shown_members(
    assignment: np.ndarray,
    distances: np.ndarray | None,
    cluster: int,
    rng: np.random.Generator,
    closest: int = CLOSEST,
    random_members: int = RANDOM_MEMBERS,
) -> Shown:
    """The images shown for ``cluster``: nearest first, then random others."""
    members = np.flatnonzero(assignment == cluster)
    if distances is None:
        picked = rng.choice(
            members, size=min(len(members), closest + random_members), replace=False
        )
        return Shown(cluster, len(members), np.sort(picked), 0)
    order = members[np.argsort(distances[members], kind="stable")]
    near, rest = order[:closest], order[closest:]
    others = np.sort(rng.choice(rest, size=min(len(rest), random_members), replace=False))
    return Shown(cluster, len(members), np.concatenate([near, others]), len(near))


@dataclass(frozen=True)
class Galleries:
    """The clusters of each gallery, as ids (the largest first, the smallest first, random)."""

    largest: np.ndarray
    smallest: np.ndarray
    random: np.ndarray


def pick_clusters(
    sizes: np.ndarray, rng: np.random.Generator, count: int = CLUSTERS_PER_GALLERY
) -> Galleries:
    """The ``count`` largest and smallest non-empty clusters and ``count`` random others."""
    filled = np.flatnonzero(sizes > 0)
    by_size = filled[np.argsort(-sizes[filled], kind="stable")]
    largest = by_size[:count]
    smallest = by_size[::-1][:count]
    rest = np.setdiff1d(filled, np.concatenate([largest, smallest]))
    chosen = rng.choice(rest, size=min(len(rest), count), replace=False)
    return Galleries(largest, smallest, np.sort(chosen))


def gallery_grid(
    pixels_of: Callable[[int], torch.Tensor],
    assignment: np.ndarray,
    distances: np.ndarray | None,
    seed: int,
    clusters: int = CLUSTERS_PER_GALLERY,
    per_cluster: int = CLOSEST,
) -> np.ndarray:
    """One picture of the largest clusters: a row per cluster, its images nearest the
    centroid first, as (H, W, 3) uint8 pixels (what TensorBoard shows every epoch).

    Args:
        pixels_of: Image ``i`` as (s, s, 3) uint8 pixels (the clustering view).
    """
    from torchvision.utils import make_grid

    rng = np.random.default_rng(seed)
    sizes = np.bincount(assignment[assignment >= 0], minlength=1)
    rows = []
    for cluster in pick_clusters(sizes, rng, clusters).largest:
        shown = shown_members(
            assignment, distances, int(cluster), rng, closest=per_cluster, random_members=0
        )
        images = [pixels_of(int(i)) for i in shown.members[:per_cluster]]
        blank = torch.zeros_like(images[0])
        rows.extend(images + [blank] * (per_cluster - len(images)))
    batch = torch.stack(rows).permute(0, 3, 1, 2)
    grid = make_grid(batch, nrow=per_cluster, padding=2, pad_value=255)
    return grid.permute(1, 2, 0).numpy()
