"""The six registries, one per component kind, and a lookup by kind name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from dcframe.registry import Registry

if TYPE_CHECKING:  # the interfaces import torch: each registry resolves its base on first use
    from dcframe.interfaces import Backbone, Clusterer, Dataset, Logger, Preprocessor, Sampler


def _interface(name: str) -> Callable[[], type]:
    """A callable returning the interface class ``name`` of :mod:`dcframe.interfaces`."""

    def resolve() -> type:
        from dcframe import interfaces

        return cast(type, getattr(interfaces, name))

    return resolve


def _builtin_backbones() -> dict[str, type[Backbone]]:
    from dcframe.components.backbones import VGG16, AlexNet, ResNet50

    return {"alexnet": AlexNet, "vgg16": VGG16, "resnet50": ResNet50}


def _builtin_preprocessors() -> dict[str, type[Preprocessor]]:
    from dcframe.components.preprocessors import L2Normalize, PCAWhitening

    return {"pca": PCAWhitening, "l2": L2Normalize}


def _builtin_clusterers() -> dict[str, type[Clusterer]]:
    from dcframe.components.clusterers import FaissKMeans, SklearnKMeans

    return {"faiss-kmeans": FaissKMeans, "sklearn-kmeans": SklearnKMeans}


def _builtin_samplers() -> dict[str, type[Sampler]]:
    from dcframe.components.samplers import RandomSampler, UniformClusterSampler

    return {"uniform": UniformClusterSampler, "random": RandomSampler}


def _builtin_datasets() -> dict[str, type[Dataset]]:
    from dcframe.components.datasets import ImageFolder, SklearnDigits

    return {"imagefolder": ImageFolder, "sklearn-digits": SklearnDigits}


def _builtin_loggers() -> dict[str, type[Logger]]:
    from dcframe.components.loggers import CsvLogger, JsonlLogger, TensorBoardLogger

    return {"jsonl": JsonlLogger, "csv": CsvLogger, "tensorboard": TensorBoardLogger}


backbones: Registry[Backbone] = Registry(
    "backbone", _interface("Backbone"), "dcframe.backbones", "backbone", _builtin_backbones
)
"""CNN trunks (:class:`~dcframe.interfaces.Backbone`): clustering feature, top layer, taps."""

preprocessors: Registry[Preprocessor] = Registry(
    "preprocessor",
    _interface("Preprocessor"),
    "dcframe.preprocessors",
    "preprocess",
    _builtin_preprocessors,
)
"""Feature transforms applied before clustering, in recipe order (PCA whitening, L2)."""

clusterers: Registry[Clusterer] = Registry(
    "clusterer", _interface("Clusterer"), "dcframe.clusterers", "clusterer", _builtin_clusterers
)
"""Algorithms that split feature rows into k clusters (faiss and scikit-learn k-means)."""

samplers: Registry[Sampler] = Registry(
    "sampler", _interface("Sampler"), "dcframe.samplers", "sampler", _builtin_samplers
)
"""Choosers of the images visited by each epoch's training pass."""

datasets: Registry[Dataset] = Registry(
    "dataset", _interface("Dataset"), "dcframe.datasets", "data", _builtin_datasets
)
"""Indexed image collections, optionally labelled."""

loggers: Registry[Logger] = Registry(
    "logger", _interface("Logger"), "dcframe.loggers", "loggers", _builtin_loggers
)
"""Where a run's metrics go as it runs (metrics.jsonl, CSV, TensorBoard, a tracker)."""

ALL: tuple[Registry[Any], ...] = (
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
