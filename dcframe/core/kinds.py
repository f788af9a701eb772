"""The six registries, one per component kind, and a lookup by kind name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from dcframe.core.registry import Builtin, Registry

if TYPE_CHECKING:  # the interfaces import torch: each registry resolves its base on first use
    from dcframe.core.interfaces import Backbone, Clusterer, Dataset, Logger, Preprocessor, Sampler


def _interface(name: str) -> Callable[[], type]:
    """A callable returning the interface class ``name`` of :mod:`dcframe.core.interfaces`."""

    def resolve() -> type:
        from dcframe.core import interfaces

        return cast(type, getattr(interfaces, name))

    return resolve


# The built-ins, by where their classes are and by their parameters models, which import no
# torch (the classes' modules do): checking a recipe imports only the models.
_COMPONENTS = "dcframe.components"


def _builtin_backbones() -> dict[str, Builtin]:
    from dcframe.components.builtin_params import AlexNetParams, VGG16Params
    from dcframe.core.params import BackboneParams

    return {
        "alexnet": Builtin(f"{_COMPONENTS}.backbones.alexnet:AlexNet", AlexNetParams),
        "vgg16": Builtin(f"{_COMPONENTS}.backbones.vgg:VGG16", VGG16Params),
        "resnet50": Builtin(f"{_COMPONENTS}.backbones.resnet:ResNet50", BackboneParams),
    }


def _builtin_preprocessors() -> dict[str, Builtin]:
    from dcframe.components.builtin_params import PCAParams
    from dcframe.core.params import NoParams

    return {
        "pca": Builtin(f"{_COMPONENTS}.preprocessors:PCAWhitening", PCAParams),
        "l2": Builtin(f"{_COMPONENTS}.preprocessors:L2Normalize", NoParams),
    }


def _builtin_clusterers() -> dict[str, Builtin]:
    from dcframe.components.builtin_params import FaissKMeansParams, SklearnKMeansParams

    return {
        "faiss-kmeans": Builtin(f"{_COMPONENTS}.clusterers:FaissKMeans", FaissKMeansParams),
        "sklearn-kmeans": Builtin(f"{_COMPONENTS}.clusterers:SklearnKMeans", SklearnKMeansParams),
    }


def _builtin_samplers() -> dict[str, Builtin]:
    from dcframe.components.builtin_params import SamplerParams, UniformClusterParams

    return {
        "uniform": Builtin(f"{_COMPONENTS}.samplers:UniformClusterSampler", UniformClusterParams),
        "random": Builtin(f"{_COMPONENTS}.samplers:RandomSampler", SamplerParams),
    }


def _builtin_datasets() -> dict[str, Builtin]:
    from dcframe.components.builtin_params import ImageFolderParams, SklearnDigitsParams

    return {
        "imagefolder": Builtin(f"{_COMPONENTS}.datasets.folder:ImageFolder", ImageFolderParams),
        "sklearn-digits": Builtin(
            f"{_COMPONENTS}.datasets.digits:SklearnDigits", SklearnDigitsParams
        ),
    }


def _builtin_loggers() -> dict[str, Builtin]:
    from dcframe.components.builtin_params import TensorBoardParams
    from dcframe.core.params import NoParams

    return {
        "jsonl": Builtin(f"{_COMPONENTS}.loggers:JsonlLogger", NoParams),
        "csv": Builtin(f"{_COMPONENTS}.loggers:CsvLogger", NoParams),
        "tensorboard": Builtin(f"{_COMPONENTS}.loggers:TensorBoardLogger", TensorBoardParams),
    }


backbones: Registry[Backbone] = Registry(
    "backbone", _interface("Backbone"), "dcframe.backbones", "backbone", _builtin_backbones
)
"""CNN trunks (:class:`~dcframe.core.interfaces.Backbone`): clustering feature, top layer, taps."""

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
