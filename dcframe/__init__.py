"""dcframe: DeepCluster, faithful to the paper, fast and pleasant to extend.

The public Python API is five names, each imported on first use (so ``import dcframe``
does not import torch):

* :func:`dcframe.load_recipe`: read and validate a recipe file (with ``--set``-style overrides).
* :func:`dcframe.train`: run or resume it; returns the run directory.
* :func:`dcframe.load_backbone`: a run's (or an official checkpoint's) trunk as a frozen
  feature extractor.
* :func:`dcframe.load_clustering`: a run's clusters as a model that places new images in them.
* ``dcframe.registries``: the component registries (:mod:`dcframe.core.kinds`), for listing or
  adding components.

Everything else is internal and may change between versions.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from dcframe.core.version import __version__

if TYPE_CHECKING:
    from dcframe.api import load_backbone, load_clustering, load_recipe, train
    from dcframe.core import kinds as registries

__all__ = [
    "__version__",
    "load_backbone",
    "load_clustering",
    "load_recipe",
    "registries",
    "train",
]

_API = ("load_backbone", "load_clustering", "load_recipe", "train")


def __getattr__(name: str) -> Any:
    # PEP 562: the API modules import torch, pydantic models and more; load them on first use.
    if name in _API:
        return getattr(import_module("dcframe.api"), name)
    if name == "registries":
        return import_module("dcframe.core.kinds")
    raise AttributeError(f"module 'dcframe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
