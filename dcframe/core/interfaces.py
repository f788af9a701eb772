"""The contracts of the six component kinds.

A component is a class with a ``Params`` model (a :class:`~dcframe.core.params.Params`
subclass) and a constructor taking one instance of it. Components never import the
engine or the CLI; the engine only talks to them through the methods below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from dcframe.core.describe import first_paragraph

# The parameters models are torch-free, so recipes validate without torch; re-exported here.
from dcframe.core.params import BackboneParams, ClustererParams, NoParams
from dcframe.core.params import Params as ParamsModel

if TYPE_CHECKING:
    from dcframe.core.distributed import World


def summary_of(cls: type) -> str:
    """The one-line description shown in listings: the docstring's first paragraph."""
    return first_paragraph(cls)


class Component(ABC):  # noqa: B024 - each kind below declares its abstract methods
    """Base class of methods, preprocessors, clusterers, samplers, datasets and loggers."""

    Params: ClassVar[type[ParamsModel]] = NoParams

    def __init__(self, params: ParamsModel) -> None:
        self.params = params


# --------------------------------------------------------------------------- backbones


class Backbone(nn.Module, ABC):
    """A CNN trunk whose clustering feature feeds a top layer that is replaced every epoch.

    Contract:

    * ``input_size``: side of the square images the net expects (``backbone.input_size``).
    * ``feature_dim``: width of the clustering feature returned by :meth:`embed`.
    * :meth:`embed`: the clustering feature (AlexNet/VGG: fc7 *before* its ReLU).
    * :meth:`forward`: logits of the current top layer on ``head_activation(embed(x))``.
    * :meth:`reset_top_layer`: a fresh ``Linear(feature_dim, k)``, weights N(0, 0.01), bias 0
      (:meth:`new_head` makes one without attaching it, for ``clusterer.extra_k``; a
      backbone with another init overrides :meth:`new_head`, which both use).
    * :meth:`body_parameters`: every trainable parameter except the top layer's
      (the frozen Sobel filters are not trainable, so they are excluded too).
    * ``tap_names`` / :meth:`taps`: named intermediate feature maps for evaluation.
    * ``any_input_size``: whether :meth:`embed` takes images of other sides than
      ``input_size`` too (a global pooling before the feature), as multi-crop's small views
      need.
    """

    Params: ClassVar[type[BackboneParams]] = BackboneParams
    tap_names: ClassVar[tuple[str, ...]] = ()
    any_input_size: ClassVar[bool] = False

    input_size: int
    feature_dim: int
    top_layer: nn.Linear | None

    def __init__(self, params: BackboneParams) -> None:
        super().__init__()
        self.params = params
        self.top_layer = None

    @abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Clustering feature of a batch of normalised RGB images, shape (B, feature_dim)."""

    def head_activation(self, features: torch.Tensor) -> torch.Tensor:
        """What sits between :meth:`embed` and the top layer (the fc7 ReLU for AlexNet/VGG)."""
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.top_layer is None:
            raise RuntimeError("no top layer: call reset_top_layer(k) before training")
        return self.top_layer(self.head_activation(self.embed(x)))

    def reset_top_layer(self, k: int) -> nn.Linear:
        """Replace the top layer by a new ``Linear(feature_dim, k)`` with the paper's init."""
        self.top_layer = self.new_head(k)
        return self.top_layer

    def new_head(self, k: int) -> nn.Linear:
        """A ``Linear(feature_dim, k)`` with the paper's init (N(0, 0.01), bias 0) on the
        network's device, not attached to it (``clusterer.extra_k``'s heads)."""
        layer = nn.Linear(self.feature_dim, k)
        nn.init.normal_(layer.weight, mean=0.0, std=0.01)
        nn.init.zeros_(layer.bias)
        return layer.to(next(self.parameters()).device)

    def body_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside the top layer: what the persistent SGD optimises."""
        top = {id(p) for p in self.top_layer.parameters()} if self.top_layer is not None else set()
        return [p for p in self.parameters() if p.requires_grad and id(p) not in top]

    @abstractmethod
    def taps(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Feature maps named in ``names`` (each one of ``tap_names``) for a batch."""


# ------------------------------------------------------------------------ preprocessors


class Preprocessor(Component):
    """One step of the feature preprocessing chain run before clustering.

    ``fit`` sees a sample of rows (already passed through the previous steps); ``transform``
    then maps any number of rows, chunk by chunk, so the full feature matrix never has to
    exist at its original width.

    In a distributed run the main process fits the step and sends what it learnt (its
    attributes other than ``params``, through pickle) to the other processes: a step whose
    fitted state holds unpicklable objects implements ``__getstate__``/``__setstate__``,
    as :class:`~dcframe.components.preprocessors.PCAWhitening` does for its faiss matrix.
    """

    def fit_sample_size(self, num_samples: int) -> int:
        """How many rows :meth:`fit` wants (0: stateless, no fit needed)."""
        return 0

    def check_sizes(self, num_samples: int, input_dim: int) -> list[str]:
        """Problems with these sizes, as messages; empty when they are fine."""
        return []

    def output_dim(self, input_dim: int) -> int:
        return input_dim

    def fit(self, x: np.ndarray) -> None:
        """Learn the step's state from ``x`` (float32, rows = samples)."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What :meth:`fit` learnt, as named numpy arrays: saved with the run's clusters
        (``clusters/epoch_NNNN.npz``, read without unpickling) so that new images can be
        placed in them. A step that learns nothing (does not override :meth:`fit`) has
        none; one that does implements this and :meth:`load_state_arrays`, else its runs
        cannot assign new images (the run itself is unaffected).

        Raises:
            NotImplementedError: the step learns a state but cannot save it.
        """
        if type(self).fit is Preprocessor.fit:
            return {}
        raise NotImplementedError(f"{type(self).__name__} does not implement state_arrays()")

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Become the fitted step that :meth:`state_arrays` returned ``arrays`` for."""
        if type(self).fit is not Preprocessor.fit:
            raise NotImplementedError(
                f"{type(self).__name__} does not implement load_state_arrays()"
            )

    @abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map float32 rows to float32 rows of width ``output_dim``."""


# --------------------------------------------------------------------------- clusterers


@dataclass(frozen=True)
class Clustering:
    """The outcome of one clustering.

    Attributes:
        assignments: (N,) int64 cluster id of every row, in ``[0, k)``.
        objective: Sum of squared distances to the assigned centroids at the last iteration.
        centroids: (k, d) float32 final centroids.
    """

    assignments: np.ndarray
    objective: float
    centroids: np.ndarray


@dataclass(frozen=True)
class Placement:
    """Rows placed in existing clusters (:meth:`Clusterer.assign`).

    Attributes:
        assignments: (N,) int64 cluster of every row.
        distances: (N,) float32 squared Euclidean distance of every row to its centroid.
    """

    assignments: np.ndarray
    distances: np.ndarray


class Clusterer(Component):
    """Partitions feature rows into ``params.k`` clusters.

    ``devices`` lists the devices the implementation can ever use; ``available_devices``
    says which of them work on this machine right now (e.g. CUDA present and faiss built
    with GPU support). The engine refuses an unavailable device before any work starts.
    """

    Params: ClassVar[type[ParamsModel]] = ClustererParams
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    params: ClustererParams

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        return cls.devices

    @property
    def k(self) -> int:
        return self.params.k

    #: Whether :meth:`cluster_shards` clusters a distributed run's rows where they are;
    #: otherwise the rows are gathered on the main process, which calls :meth:`cluster`.
    distributed: ClassVar[bool] = False

    @abstractmethod
    def cluster(self, x: np.ndarray, seed: int, device: str) -> Clustering:
        """Cluster float32 rows ``x`` (N x d) with this seed on ``device`` ("cpu"/"cuda")."""

    @classmethod
    def places_new_rows(cls) -> bool:
        """Whether this clusterer implements :meth:`assign` (its runs can assign new images)."""
        return cls.assign is not Clusterer.assign

    def assign(self, x: np.ndarray, centroids: np.ndarray, device: str) -> Placement:
        """Place rows ``x`` (N x d float32, preprocessed as the clustered rows were) in the
        clusters that :meth:`cluster` returned ``centroids`` for: how ``dcframe assign``
        sorts new images. The built-in k-means clusterers take the nearest centroid
        (:func:`dcframe.core.clustering.nearest_centroids`); a clusterer whose clusters are
        not defined by their centroids alone leaves this out, and its runs then cannot
        assign new images.

        Raises:
            NotImplementedError: the clusterer cannot place rows in existing clusters.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement assign()")

    def cluster_shards(self, x: np.ndarray, seed: int, device: str, world: World) -> Clustering:
        """Cluster the rows of every process of ``world`` together; ``x`` is this process's.

        Called on every process at once, only when ``distributed`` is true. Returns the
        assignments of this process's rows, and the global objective and centroids.
        """
        raise TypeError(f"{type(self).__name__} does not cluster distributed rows")


# ----------------------------------------------------------------------------- samplers


class Sampler(Component):
    """Chooses which images (and how often) the training pass visits this epoch."""

    @abstractmethod
    def sample(self, assignments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Dataset indices to train on, in visiting order, from this epoch's assignments."""


# ----------------------------------------------------------------------------- datasets


class Dataset(Component):
    """An indexed collection of images, optionally labelled (labels only feed metrics).

    The constructor must fail with a :class:`~dcframe.core.errors.UserError` naming the
    parameter to fix when the data is missing or empty.
    """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image; a corrupt file raises ``UserError`` naming it."""

    def decode_at_least(self, side: int) -> None:
        """A hint: every use of an image first shrinks it to at least ``side`` pixels on its
        shorter side, so it may be decoded at a reduced scale down to that (a JPEG's draft
        mode). Datasets that cannot use it ignore it."""

    def encoded(self, index: int) -> tuple[bytes, str] | None:
        """Image ``index``'s file bytes and its name when it is a JPEG (so that it can be
        decoded on the run's device, ``run.jpeg_decode``), else None (decoded with
        :meth:`image`). An unreadable file raises ``BadImageError``."""
        return None

    def image_id(self, index: int) -> str:
        """How a person finds image ``index``: its file's path, a shard and member, or (the
        default) its position in the dataset. Used in exported cluster lists."""
        return str(index)

    def image_file(self, index: int) -> str | None:
        """The path of the file that holds image ``index`` and nothing else (what a folder
        per cluster links to), or None when there is none (arrays, tar shards)."""
        return None

    @property
    def labels(self) -> np.ndarray | None:
        """(N,) int64 class ids, or None for unlabelled data."""
        return None

    @property
    def class_names(self) -> list[str] | None:
        return None


# ------------------------------------------------------------------------------ loggers


@dataclass(frozen=True)
class EpochRecord:
    """What a finished epoch hands to the loggers.

    Attributes:
        metrics: The epoch's record, as written to ``metrics.jsonl``.
        assignment: (N,) cluster of every image (-1: left out as unreadable).
        gallery: Draws (on demand, so a logger that shows none pays nothing) a grid of the
            largest clusters' images nearest their centroids, as (H, W, 3) uint8 pixels.
    """

    metrics: dict[str, Any]
    assignment: np.ndarray
    gallery: Callable[[], np.ndarray]


@dataclass(frozen=True)
class RunInfo:
    """The run a logger is opened for.

    Attributes:
        run_dir: The run directory (the place for a logger's files).
        name: ``run.name``.
        start_epoch: The first epoch this run does (0, or where a resumed run goes on).
        epochs: ``run.epochs``.
        steps_per_epoch: Training steps of every epoch.
    """

    run_dir: Path
    name: str
    start_epoch: int
    epochs: int
    steps_per_epoch: int


class Logger(Component):
    """Where a run's numbers go as it runs: a file, TensorBoard, an experiment tracker.

    Loggers run on the main process only. :meth:`open` is called once before the first epoch
    a run (or a resumed run) does, :meth:`step` every few training steps with the running
    loss, :meth:`epoch` when an epoch's results are saved, :meth:`close` at the end, also
    when the run fails or is stopped.
    """

    def open(self, run: RunInfo) -> None:
        """Start writing. A resumed run starts at ``run.start_epoch`` and does that epoch
        again: whatever was logged for it and later epochs is to be dropped."""

    def step(self, epoch: int, step: int, global_step: int, values: dict[str, float]) -> None:
        """The running values of the training pass (``loss``, ``lr``, ``images_per_s``)
        after ``step`` steps of the epoch; ``global_step`` counts over the whole run."""

    @abstractmethod
    def epoch(self, record: EpochRecord) -> None:
        """An epoch's results, once they are saved."""

    def close(self) -> None:
        """Flush and release what :meth:`open` acquired."""


# ------------------------------------------------------------------------------ methods


class Method(Component):
    """A self-supervised method: what each epoch of a run does with the shared parts.

    The engine opens the run (the components, devices, processes, run directory, caches,
    loggers, resume) and hands every method the same session; the method's
    :meth:`run_epoch` is its protocol, one epoch of it, read top to bottom. ``deepcluster``
    (the paper's) and ``deepcluster-v2`` are built in; a plugin adds another through the
    ``dcframe.methods`` entry-point group.

    Everything a method trains besides the backbone (a projection head, a memory bank) is
    built by :meth:`attach` and saved in every checkpoint through :meth:`state_dict`.
    """

    def check_recipe(self, recipe: Any) -> list[str]:
        """Problems of a validated recipe this method cannot run (``section.key: why;
        fix`` lines), reported before any work; none by default."""
        return []

    def attach(self, session: Any) -> None:
        """Build what the method trains besides the backbone, once, before a resumed run's
        state is loaded (``session``: :class:`dcframe.engine.protocol.Session`)."""

    def state_dict(self) -> dict[str, Any]:
        """What the method keeps between epochs, for the checkpoint. A collective in a
        distributed run: every process calls it, the main process's value is saved."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s value (every process gets the saved one)."""

    def cannot_assign(self) -> str | None:
        """Why ``dcframe assign`` cannot place new images in this method's clusters, or None
        when the backbone and the preprocessing steps embed them as the run did."""
        return None

    @abstractmethod
    def run_epoch(
        self, epoch: int, session: Any, previous: np.ndarray | None, resumed: Any
    ) -> EpochRecord:
        """One epoch: cluster, train, save (``previous``: the last epoch's assignment, None in
        the first; ``resumed``: the pass a mid-epoch checkpoint stopped in, or None)."""
