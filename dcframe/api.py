"""The Python API: load a recipe, train, use the trained trunk as a feature extractor, and
place new images in a run's clusters.

The same functions are reachable from the package itself (``dcframe.load_recipe``,
``dcframe.train``, ``dcframe.load_backbone``, ``dcframe.load_clustering``), which imports
this module only when one of them is first used, so ``import dcframe`` stays cheap:

```python
import dcframe

recipe = dcframe.load_recipe("recipes/quickstart.toml", ["run.epochs=2"])
run = dcframe.train(recipe)
model = dcframe.load_backbone(run.path)
features = model(batch)  # (B, feature_dim), the clustering feature
placed = dcframe.load_clustering(run.path).assign(["photo.jpg", "more/photos/"])
placed.clusters[0], placed.distances  # cluster and distance to its centroid, per image
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from dcframe.clusters.model import ClusterModel
    from dcframe.core.interfaces import Backbone
    from dcframe.store.rundir import RunDirectory

_T = TypeVar("_T")


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Any:
    """Read and validate a recipe file, as ``dcframe recipe check`` does.

    Args:
        path: The TOML recipe.
        overrides: ``section.key=value`` changes applied before validation, as ``--set``
            on the command line (``"run.epochs=2"``, ``"preprocess.0.dim=128"``).

    Returns:
        The validated recipe, every default filled in (a pydantic model whose sections
        are attributes: ``recipe.run.epochs``, ``recipe.backbone.name``).

    Raises:
        dcframe.core.errors.UserError: the file is missing or is not TOML.
        dcframe.core.errors.RecipeError: every validation problem, one ``path: message`` each.
    """
    from dcframe import recipe

    return recipe.load(path, list(overrides))


def train(recipe: Any, resume: bool = False, *, quiet: bool = False) -> RunDirectory:
    """Run (or resume) DeepCluster as ``dcframe run`` does; returns the run directory.

    Args:
        recipe: A recipe from :func:`load_recipe`, or the path of a recipe file.
        resume: Continue the run saved in the run directory (``--resume``).
        quiet: No progress bars or per-epoch lines (``--quiet``).

    Returns:
        The run directory (``.path`` is ``<run.output_dir>/<run.name>``).

    Raises:
        dcframe.core.errors.UserError: anything the user can fix (recipe, data, machine), all
            checked before the first epoch where possible.
    """
    from dcframe import engine
    from dcframe.core.progress import Reporter

    if isinstance(recipe, str | Path):
        recipe = load_recipe(recipe)
    return engine.run(recipe, resume=resume, reporter=Reporter(quiet=quiet))


class FeatureExtractor(nn.Module):
    """A trained (or official) trunk, frozen in eval mode, used as a plain feature extractor.

    Calling it returns the clustering feature (:meth:`embed`), so it drops in wherever a
    ``torch.nn.Module`` mapping images to vectors is expected. The top layer, which only
    predicted one epoch's clusters, is gone.

    Attributes:
        backbone: The dcframe backbone itself (``state_dict()`` keys without a prefix).
        input_size: Side of the square images it expects (``backbone.input_size``).
        feature_dim: Width of :meth:`embed`'s output.
        tap_names: The intermediate layers :meth:`taps` can return (``conv1`` ...).
        info: Where the weights came from: source, file, backbone name and parameters, epoch.
    """

    def __init__(self, backbone: Backbone, info: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_size = backbone.input_size
        self.feature_dim = backbone.feature_dim
        self.tap_names: tuple[str, ...] = tuple(backbone.tap_names)
        self.info = info
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The clustering feature of a batch: the same as :meth:`embed`."""
        return self.embed(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) features of (B, 3, input_size, input_size) normalised RGB images
        (AlexNet/VGG: fc7 before its ReLU; ResNet-50: the pooled 2048-d output). Other image
        sizes work where the architecture allows them (ResNet-50's global pooling).

        Raises:
            ValueError: ``x`` is not a batch of RGB images, or is one of a size this network
                cannot take (AlexNet/VGG: only ``input_size``), saying what it expects.
        """
        return self._run(self.backbone.embed, x)

    def taps(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Feature maps of the layers ``names`` (each one of :attr:`tap_names`) for a batch
        as :meth:`embed` takes it.

        Raises:
            ValueError: as :meth:`embed`.
        """
        return self._run(lambda batch: self.backbone.taps(batch, list(names)), x)

    def _run(self, compute: Callable[[torch.Tensor], _T], x: torch.Tensor) -> _T:
        """``compute(x)`` after checking that ``x`` is a (B, 3, H, W) batch; a failure on a
        batch whose images are not ``input_size`` pixels is reported as the wrong size."""
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else None
        if shape is None or len(shape) != 4 or shape[1] != 3:
            raise ValueError(self._wrong_input(x, shape))
        if shape[2] == shape[3] == self.input_size:
            return compute(x)
        try:  # another size: some architectures take it (global pooling), others do not
            return compute(x)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:
            raise ValueError(self._wrong_input(x, shape)) from error

    def _wrong_input(self, x: object, shape: tuple[int, ...] | None) -> str:
        side = self.input_size
        got = f"shape {shape}" if shape is not None else f"a {type(x).__name__}"
        fix = "add the batch dimension with x.unsqueeze(0); " if shape and len(shape) == 3 else ""
        return (
            f"this network takes a batch of (B, 3, {side}, {side}) images (RGB, {side}x{side} "
            f"pixels, normalised), got {got}; {fix}model.transform() resizes and centre-crops "
            f"a PIL image to {side}x{side} and normalises it: "
            "torch.stack([model.transform()(image) for image in images])"
        )

    def transform(self) -> Any:
        """The torchvision transform that turns a PIL image into this model's input: resize,
        centre crop to ``input_size``, ToTensor, ImageNet normalisation (the clustering view)."""
        from dcframe.data.transforms import clustering_transform

        return clustering_transform(self.input_size)


def load_backbone(run_dir_or_checkpoint: str | Path, epoch: int | None = None) -> FeatureExtractor:
    """The trunk of a run or checkpoint, frozen, as a :class:`FeatureExtractor`.

    Args:
        run_dir_or_checkpoint: A run directory (its latest ``checkpoint.pt``), a dcframe
            checkpoint file, or an official DeepCluster ``checkpoint.pth.tar`` (AlexNet or
            VGG16; the paper's architecture, Sobel input read from the weights).
        epoch: With a run directory, ``checkpoints/epoch_NNNN.pt`` instead of the latest
            checkpoint (kept every ``run.checkpoint_every`` epochs).

    Raises:
        dcframe.core.errors.UserError: not a run directory or checkpoint, no such epoch, or
            weights that do not fit the architecture.
    """
    from dcframe.store.model_options import ModelOptions
    from dcframe.store.trained import load_model

    options = ModelOptions(path=str(run_dir_or_checkpoint), epoch=epoch)
    loaded = load_model(options)
    return FeatureExtractor(loaded.backbone, loaded.info)


def load_clustering(run_dir_or_file: str | Path, epoch: int | None = None) -> ClusterModel:
    """An epoch's clustering of a run, as a model whose ``assign(images)`` places new images
    in its clusters (what ``dcframe assign`` does).

    The images go through the trunk as it was when that epoch clustered the run's images,
    the fitted preprocessing and the centroids of every head (``clusterer.k`` and each
    ``extra_k``). ``assign`` takes image files, folders (searched recursively), PIL images
    or a dcframe dataset, and returns an ``ImageClusters``: ``clusters`` (heads x N, -1
    for an image skipped as unreadable), ``distances`` (N, Euclidean, to the first head's
    centroid), ``ranks()``, ``ids`` and ``rows()``.

    Args:
        run_dir_or_file: A run directory, or a ``clusters/epoch_NNNN.npz`` file.
        epoch: With a run directory, the epoch (default: the last finished); a run keeps
            the latest epoch's clustering and every ``run.keep_clusters_every``-th.

    Raises:
        dcframe.core.errors.UserError: not a run, an epoch not kept, or a clustering whose
            plugin preprocessing or clusterer cannot place new images.
    """
    from dcframe.clusters.model import load_clustering as load

    return load(run_dir_or_file, epoch)
