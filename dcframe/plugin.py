"""Everything a plugin author imports: the one module a dcframe plugin needs.

A plugin adds components (methods, backbones, preprocessors, clusterers, samplers,
datasets, loggers) through entry points; each component subclasses its kind's base class below,
declares a :class:`Params` model, raises :class:`UserError` for problems its user can
fix, and is checked by the same contract tests dcframe runs on its own components::

    from dcframe.plugin import Clusterer, ClustererParams, Clustering, check_component

Names here are stable across dcframe versions; the modules they come from are not.
"""

from __future__ import annotations

from dcframe.components.backbones.sobel import Sobel
from dcframe.core.clustering import (
    check_device,
    check_k,
    float32_rows,
    import_faiss,
    nearest_centroids,
)
from dcframe.core.contract import (
    check_backbone,
    check_clusterer,
    check_component,
    check_dataset,
    check_logger,
    check_method,
    check_params_model,
    check_preprocessor,
    check_sampler,
)
from dcframe.core.distributed import World
from dcframe.core.errors import UserError
from dcframe.core.interfaces import (
    Backbone,
    Clusterer,
    Clustering,
    Dataset,
    EpochRecord,
    Logger,
    Method,
    Placement,
    Preprocessor,
    RunInfo,
    Sampler,
)
from dcframe.core.params import (
    FULL_INPUT_SIZE,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    SMALL_INPUT_SIZE,
    BackboneParams,
    ClustererParams,
    NoParams,
    Params,
)
from dcframe.engine.protocol import run_epoch as deepcluster_epoch

__all__ = [
    "FULL_INPUT_SIZE",
    "MAX_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "SMALL_INPUT_SIZE",
    "Backbone",
    "BackboneParams",
    "Clusterer",
    "ClustererParams",
    "Clustering",
    "Dataset",
    "EpochRecord",
    "Logger",
    "Method",
    "NoParams",
    "Params",
    "Placement",
    "Preprocessor",
    "RunInfo",
    "Sampler",
    "Sobel",
    "UserError",
    "World",
    "check_backbone",
    "check_clusterer",
    "check_component",
    "check_dataset",
    "check_device",
    "check_k",
    "check_logger",
    "check_method",
    "check_params_model",
    "check_preprocessor",
    "check_sampler",
    "deepcluster_epoch",
    "float32_rows",
    "import_faiss",
    "nearest_centroids",
]
