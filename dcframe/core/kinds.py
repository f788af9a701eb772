"""The seven registries, one per component kind, and a lookup by kind name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from dcframe.core.registry import Builtin, Registry

if TYPE_CHECKING:  # the interfaces import torch: each registry resolves its base on first use
    from dcframe.core.interfaces import (
        Backbone,
        Clusterer,
        Dataset,
        Logger,
        Method,
        Preprocessor,
        Sampler,
    )


def _interface(name: str) -> Callable[[], type]:
    """A callable returning the interface class ``name`` of :mod:`dcframe.core.interfaces`."""

    def resolve() -> type:
        from dcframe.core import interfaces

        return cast(type, getattr(interfaces, name))

    return resolve


def _catalog(kind: str) -> Callable[[], Mapping[str, Builtin]]:
    """The built-in components of one kind, from :mod:`dcframe.components.catalog`.

    Named, not imported: the core sits below the components, so it reaches dcframe's own
    catalog the way it reaches a plugin's entry points, by name, on first use.
    """

    def read() -> Mapping[str, Builtin]:
        catalog = importlib.import_module("dcframe.components.catalog")
        return cast(Mapping[str, Builtin], getattr(catalog, kind)())

    return read


methods: Registry[Method] = Registry(
    "method", _interface("Method"), "dcframe.methods", "method", _catalog("methods")
)
"""Self-supervised methods (:class:`~dcframe.core.interfaces.Method`): one epoch's protocol."""

backbones: Registry[Backbone] = Registry(
    "backbone", _interface("Backbone"), "dcframe.backbones", "backbone", _catalog("backbones")
)
"""CNN trunks (:class:`~dcframe.core.interfaces.Backbone`): clustering feature, top layer, taps."""

preprocessors: Registry[Preprocessor] = Registry(
    "preprocessor",
    _interface("Preprocessor"),
    "dcframe.preprocessors",
    "preprocess",
    _catalog("preprocessors"),
)
"""Feature transforms applied before clustering, in recipe order (PCA whitening, L2)."""

clusterers: Registry[Clusterer] = Registry(
    "clusterer", _interface("Clusterer"), "dcframe.clusterers", "clusterer", _catalog("clusterers")
)
"""Algorithms that split feature rows into k clusters (faiss and scikit-learn k-means)."""

samplers: Registry[Sampler] = Registry(
    "sampler", _interface("Sampler"), "dcframe.samplers", "sampler", _catalog("samplers")
)
"""Choosers of the images visited by each epoch's training pass."""

datasets: Registry[Dataset] = Registry(
    "dataset", _interface("Dataset"), "dcframe.datasets", "data", _catalog("datasets")
)
"""Indexed image collections, optionally labelled."""

loggers: Registry[Logger] = Registry(
    "logger", _interface("Logger"), "dcframe.loggers", "loggers", _catalog("loggers")
)
"""Where a run's metrics go as it runs (metrics.jsonl, CSV, TensorBoard, a tracker)."""

ALL: tuple[Registry[Any], ...] = (
    methods,
    backbones,
    preprocessors,
    clusterers,
    samplers,
    datasets,
    loggers,
)


def find_anywhere(name: str) -> list[Registry[Any]]:
    """Registries holding a component (or a failed plugin) called ``name``."""
    return [r for r in ALL if name in r or any(f.name == name for f in r.failed)]
