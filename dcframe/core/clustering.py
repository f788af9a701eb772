"""Helpers for clusterer and preprocessor implementations, built-in or from plugins.

A stable public module: plugin authors may import these to fail the way dcframe's own
components do (same messages, same exit code).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch

from dcframe.core.errors import UserError
from dcframe.core.interfaces import Clusterer, Placement

__all__ = ["check_device", "check_k", "float32_rows", "import_faiss", "nearest_centroids"]


def import_faiss() -> ModuleType:
    """The ``faiss`` module, or a :class:`UserError` saying how to install it.

    faiss is an optional dependency (``dcframe[cpu]``; a GPU build only where one matches
    torch's CUDA, docs/gpu.md), so it is imported only when a faiss-backed component runs;
    torch-kmeans and sklearn-kmeans work without it.
    """
    try:
        return importlib.import_module("faiss")
    except ImportError as exc:
        raise UserError(
            "faiss is not installed: pip install 'dcframe[cpu]', or use the torch-kmeans "
            "clusterer (clusterer.name = 'torch-kmeans'), which needs only torch"
        ) from exc


def float32_rows(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous float32 matrix (what faiss requires), copying only if needed."""
    rows = np.ascontiguousarray(x, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-D matrix of feature rows, got shape {rows.shape}")
    return rows


def check_k(k: int, num_rows: int) -> None:
    """Refuse a k-means request with more clusters than rows.

    Raises:
        UserError: ``k`` exceeds ``num_rows``; the message names ``clusterer.k`` and the fix.
    """
    if k > num_rows:
        raise UserError(
            f"clusterer.k: {k} is larger than the number of images ({num_rows}); k-means needs "
            f"at least one image per cluster: set clusterer.k <= {num_rows} or use more images"
        )


def check_device(clusterer: type[Clusterer], device: str) -> None:
    """Refuse a device the clusterer cannot use on this machine."""
    available = clusterer.available_devices()
    if device not in available:
        raise UserError(
            f"{clusterer.__name__} cannot run on {device!r} here; "
            f"available devices: {', '.join(available)}"
        )


@torch.no_grad()
def nearest_centroids(
    x: np.ndarray, centroids: np.ndarray, device: str = "cpu", block_rows: int = 16384
) -> Placement:
    """The nearest of ``centroids`` (k x d) to every row of ``x`` (N x d), Euclidean, on
    ``device``, block by block: the ``assign`` of centroid-defined clusters.

    Candidates are ranked by the expansion ``|c|^2 - 2 x.c`` (one matrix product per
    block, as faiss' flat index does); the returned squared distance is then computed
    directly from the difference, so that it is exact rather than a cancellation.
    """
    rows, centres = float32_rows(x), float32_rows(centroids)
    if rows.shape[1] != centres.shape[1]:
        raise ValueError(f"rows have {rows.shape[1]} dims but the centroids {centres.shape[1]}")
    c = torch.from_numpy(centres).to(device)
    c_sq = (c * c).sum(dim=1)
    assignments = np.empty(len(rows), dtype=np.int64)
    distances = np.empty(len(rows), dtype=np.float32)
    with torch.autocast(torch.device(device).type, enabled=False):
        for start in range(0, len(rows), block_rows):
            block = torch.from_numpy(rows[start : start + block_rows]).to(device)
            nearest = torch.addmm(c_sq, block, c.t(), alpha=-2.0).argmin(dim=1)
            gap = block - c[nearest]
            stop = start + len(block)
            assignments[start:stop] = nearest.cpu().numpy()
            distances[start:stop] = (gap * gap).sum(dim=1).cpu().numpy()
    return Placement(assignments, distances)
