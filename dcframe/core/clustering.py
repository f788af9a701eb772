"""Helpers for clusterer and preprocessor implementations, built-in or from plugins.

A stable public module: plugin authors may import these to fail the way dcframe's own
components do (same messages, same exit code).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from dcframe.core.errors import UserError
from dcframe.core.interfaces import Clusterer

__all__ = ["check_device", "check_k", "float32_rows", "import_faiss"]


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
