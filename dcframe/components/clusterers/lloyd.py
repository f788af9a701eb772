"""Lloyd's k-means in plain torch: blocked exact assignment, faiss-style empty-cluster splits.

This module knows nothing of dcframe's components; :mod:`.torch_kmeans` wraps it into
the ``torch-kmeans`` clusterer. Every function works on tensors of one device; every random
draw comes from a CPU :class:`torch.Generator`, so a seed selects the same initial rows
and the same split donors whatever the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SPLIT_EPS = 1.0 / 1024.0
"""Relative perturbation that separates the two halves of a split cluster (faiss' value)."""


def _one_process(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass(frozen=True)
class KMeansRun:
    """The outcome of :func:`lloyd`.

    Attributes:
        assignments: (N,) int64 id of the nearest final centroid of every row.
        centroids: (k, d) float32 final centroids.
        objectives: Per iteration, the sum of squared distances of the rows to their
            nearest centroid among those the iteration started from (faiss' per-iteration
            objective). One entry per iteration actually run.
        splits: Per iteration, how many empty clusters were re-seeded by splitting.
    """

    assignments: torch.Tensor
    centroids: torch.Tensor
    objectives: list[float]
    splits: list[int]

    @property
    def objective(self) -> float:
        """The last iteration's objective, the value faiss (and dcframe) reports."""
        return self.objectives[-1]

    @property
    def iterations(self) -> int:
        """Iterations run; fewer than requested when the centroids reached a fixed point."""
        return len(self.objectives)


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums over many rows, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _draw_proportional(weights: torch.Tensor, generator: torch.Generator) -> int:
    """Index drawn with probability proportional to the non-negative ``weights``.

    Inverse-CDF sampling rather than :func:`torch.multinomial`, which is limited to 2**24
    categories, too few for the rows of a large data set. The uniform number comes from the
    CPU ``generator`` so that the draw does not depend on the device of ``weights``.

    Raises:
        ValueError: ``weights`` sum to zero.
    """
    cumulative = weights.to(_accumulation_dtype(weights.device)).cumsum(0)
    total = float(cumulative[-1])
    if total <= 0.0:
        raise ValueError("cannot draw from weights that sum to zero")
    target = torch.rand((), dtype=torch.float64, generator=generator).item() * total
    # right=True skips zero-weight entries: their cumulative value equals their predecessor's.
    index = int(torch.searchsorted(cumulative, _scalar_like(target, cumulative), right=True))
    if index == weights.numel():
        # u * total rounded up to total: that point belongs to the last entry of positive
        # weight, the first whose cumulative value reaches the total.
        index = int(torch.searchsorted(cumulative, _scalar_like(total, cumulative)))
    return index


def _scalar_like(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a one-element tensor of ``like``'s dtype and device."""
    return torch.tensor([value], dtype=like.dtype, device=like.device)


class NearestCentroids:
    """Exact nearest centroid (squared Euclidean distance) of fixed rows, block by block.

    Uses ``||x||^2 - 2 x.c + ||c||^2`` with one matrix product per block of ``batch_rows``
    rows, so at most a ``batch_rows x k`` score matrix exists at a time. The argmin only
    needs ``||c||^2 - 2 x.c``; ``||x||^2``, computed once for all calls, is added to the
    minimum afterwards. Ties go to the lowest centroid id.

    The score matrix is allocated once and reused by every block and every call with the
    same ``k``: Lloyd's loop calls this once per iteration, and a fresh allocation of a
    matrix this large costs page faults on CPU and allocator churn on GPUs each time.

    Args:
        x: (N, d) float32 rows.
        batch_rows: Rows per block.
    """

    def __init__(self, x: torch.Tensor, batch_rows: int) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
        self.x = x
        self.batch_rows = batch_rows
        self.x_sq = (x * x).sum(dim=1)
        self._scores: torch.Tensor | None = None

    def __call__(self, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest centroid of every row.

        Args:
            centroids: (k, d) float32 centroids on the device of the rows.

        Returns:
            (N,) int64 nearest centroid ids and (N,) float32 squared distances to them,
            clamped at 0 (the expansion can go slightly negative by cancellation).
        """
        x = self.x
        num_rows, k = x.shape[0], centroids.shape[0]
        if self._scores is None or self._scores.shape[1] != k:
            self._scores = x.new_empty(min(self.batch_rows, num_rows), k)
        c_sq = (centroids * centroids).sum(dim=1)
        centroids_t = centroids.t()
        assignments = torch.empty(num_rows, dtype=torch.int64, device=x.device)
        distances = torch.empty(num_rows, dtype=x.dtype, device=x.device)
        for start in range(0, num_rows, self.batch_rows):
            stop = min(start + self.batch_rows, num_rows)
            block = self._scores[: stop - start]
            torch.addmm(c_sq, x[start:stop], centroids_t, beta=1.0, alpha=-2.0, out=block)
            torch.min(block, dim=1, out=(distances[start:stop], assignments[start:stop]))
        distances.add_(self.x_sq).clamp_(min=0.0)
        return assignments, distances


def random_init(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` distinct rows of ``x`` drawn uniformly at random (faiss' initialisation).

    Returns:
        (k, d) copy of the chosen rows.
    """
    rows = torch.randperm(x.shape[0], generator=generator)[:k]
    return x[rows.to(x.device)].clone()


def kmeans_plus_plus_init(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): D^2 sampling, one candidate per step.

    The first centroid is a uniformly random row; each next one is a row drawn with
    probability proportional to its squared distance to the nearest centroid chosen so far.
    This costs ``k`` passes of ``N x d`` over the data (matrix-vector products, memory
    bound), so for large ``k`` it can take as long as several Lloyd iterations.

    When every row already coincides with a chosen centroid (fewer distinct rows than
    ``k``), the remaining centroids are drawn uniformly, as duplicates.

    Returns:
        (k, d) copy of the chosen rows.
    """
    num_rows = x.shape[0]
    x_sq = (x * x).sum(dim=1)
    chosen = [int(torch.randint(num_rows, (), generator=generator))]
    nearest_sq = torch.full((num_rows,), float("inf"), dtype=x.dtype, device=x.device)
    for _ in range(1, k):
        last = x[chosen[-1]]
        to_last = (x_sq - 2.0 * (x @ last) + last @ last).clamp_(min=0.0)
        torch.minimum(nearest_sq, to_last, out=nearest_sq)
        if bool((nearest_sq > 0).any()):
            chosen.append(_draw_proportional(nearest_sq, generator))
        else:
            chosen.append(int(torch.randint(num_rows, (), generator=generator)))
    return x[torch.tensor(chosen, device=x.device)].clone()


def split_empty_clusters(
    centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> int:
    """Re-seed every empty cluster by splitting a populated one, in place, the faiss way.

    Empty clusters are handled in id order. For each, a donor cluster ``j`` is drawn with
    probability proportional to ``max(counts[j] - 1, 0)`` (clusters of one row or less
    never give), the empty cluster receives a copy of the donor's centroid, and the two
    copies are pushed apart symmetrically: on even coordinates the new one is scaled by
    ``1 + eps`` and the donor by ``1 - eps``, on odd coordinates the other way round, with
    ``eps = 1/1024``. The donor's count is then shared evenly (possibly fractionally)
    between the two, so later splits in the same call see the halves.

    This is faiss' ``split_clusters`` rule with one difference: faiss picks the donor by
    scanning the clusters with a fixed-seed generator, accepting each with probability
    ``(count - 1) / (n - k)``, which only approximates proportionality; here the draw is
    exactly proportional and comes from ``generator``.

    A donor always exists when ``counts`` sums to at least ``k`` (at least as many rows as
    clusters): the sum of ``count - 1`` over the non-empty clusters is then at least the
    number of empty ones, and splitting preserves that.

    Args:
        centroids: (k, d) float centroids, updated in place (any device).
        counts: (k,) rows per cluster (any numeric dtype that holds halves, any device),
            updated in place.
        generator: CPU generator for the donor draws.

    Returns:
        Number of splits, i.e. of clusters that were empty.

    Raises:
        ValueError: there are empty clusters but no cluster holds more than one row.
    """
    if not bool((counts == 0).any()):
        return 0
    sizes = counts.to("cpu", torch.float64)
    dim = centroids.shape[1]
    even = torch.arange(dim, device=centroids.device) % 2 == 0
    up, down = 1.0 + SPLIT_EPS, 1.0 - SPLIT_EPS
    # Factors of the new centroid and of the donor: (1 + eps, 1 - eps) on even coordinates,
    # (1 - eps, 1 + eps) on odd ones. Both are exact in float32, so the products round
    # exactly as faiss' float * double products do.
    grow = torch.where(even, up, down).to(centroids.dtype)
    shrink = torch.where(even, down, up).to(centroids.dtype)
    empty = (sizes == 0).nonzero().flatten().tolist()
    for target in empty:
        try:
            donor = _draw_proportional((sizes - 1.0).clamp_(min=0.0), generator)
        except ValueError:
            raise ValueError(
                "cannot split: empty clusters remain but no cluster holds more than one row"
            ) from None
        centroids[target] = centroids[donor] * grow
        centroids[donor] *= shrink
        sizes[target] = sizes[donor] / 2.0
        sizes[donor] -= sizes[target]
    counts.copy_(sizes)
    return len(empty)


def lloyd(
    x: torch.Tensor,
    initial_centroids: torch.Tensor,
    iterations: int,
    generator: torch.Generator,
    batch_rows: int,
    spherical: bool = False,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> KMeansRun:
    """Lloyd's k-means from the given centroids, then a final exact assignment.

    Each iteration: assign every row to its nearest centroid (recording the objective,
    the sum of the squared distances), move each centroid to the mean of its rows, re-seed
    empty clusters with :func:`split_empty_clusters`, and, when ``spherical``,
    L2-normalise the centroids. The loop stops early once an iteration leaves the
    centroids bit-for-bit unchanged, since every further iteration would then repeat it
    (faiss stops at the same point one iteration later, when its objective stops changing;
    the reported objective is the same). After the loop every row is assigned to its
    nearest *final* centroid; clusters can still be empty in that assignment.

    Args:
        x: (N, d) float32 rows (unit-norm rows when ``spherical``).
        initial_centroids: (k, d) float32 starting centroids on the device of ``x``; not
            modified.
        iterations: Maximum number of iterations, at least 1.
        generator: CPU generator for the empty-cluster splits.
        batch_rows: Rows per distance block (see :class:`NearestCentroids`).
        spherical: Normalise the centroids after every update.
        total: Sums a tensor over every process holding a share of the rows (None: one
            process holds them all). Each iteration sums the per-cluster row sums, the
            counts and the objective with it; with the same ``generator`` on every process,
            the splits and so the centroids are the same everywhere.

    Returns:
        The final assignment and centroids, and per-iteration objectives and split counts.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if total is None:
        total = _one_process
    k = initial_centroids.shape[0]
    accumulate = _accumulation_dtype(x.device)
    nearest = NearestCentroids(x, batch_rows)
    centroids = initial_centroids
    objectives: list[float] = []
    splits: list[int] = []
    for _ in range(iterations):
        assignments, distances = nearest(centroids)
        objectives.append(float(total(distances.sum(dtype=accumulate))))

        counts = total(torch.bincount(assignments, minlength=k).to(x.dtype))
        sums = total(torch.zeros_like(centroids).index_add_(0, assignments, x))
        # Empty clusters get 0 / 1 = a zero centroid here; the split overwrites it next.
        updated = sums / counts.clamp(min=1.0).unsqueeze(1)
        splits.append(split_empty_clusters(updated, counts, generator))
        if spherical:
            updated = F.normalize(updated, dim=1)

        # A fixed point: the next iteration would find the same assignment and centroids.
        converged = torch.equal(updated, centroids)
        centroids = updated
        if converged:
            break
    assignments, _ = nearest(centroids)
    return KMeansRun(assignments, centroids, objectives, splits)
