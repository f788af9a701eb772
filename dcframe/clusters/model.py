"""A run's clustering as a model that places new images in its clusters.

An epoch's clustering is defined by the trunk that embedded the run's images (as it was
when the epoch began), the fitted preprocessing chain and the centroids of every head, all
saved in ``clusters/epoch_NNNN.npz`` (:mod:`dcframe.store.clusterings`). New images take
the same path as the run's images did: the clustering view (resize, centre crop), the
trunk's clustering feature, each preprocessing step, then each head's clusterer places the
row (:meth:`~dcframe.core.interfaces.Clusterer.assign`, the nearest centroid for the
built-in k-means).
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dcframe.clusters.listing import (
    ImageClusters,
    finished_epochs,
    from_dataset,
    run_directory,
)
from dcframe.components.datasets import IMAGE_EXTENSIONS
from dcframe.core import kinds
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone, Clusterer, Dataset, Preprocessor
from dcframe.core.progress import Reporter
from dcframe.core.stop_signals import leave_stops_to_the_run
from dcframe.data.bad_images import BadImagePolicy, MarkUnreadable, collate_readable
from dcframe.data.images import open_rgb
from dcframe.data.transforms import clustering_transform, smallest_side_used
from dcframe.engine.devices import amp_dtype, to_device
from dcframe.engine.setup import with_k
from dcframe.evaluation.data import ImageSubset
from dcframe.store import clusterings
from dcframe.store.trained import load_weights

#: What :meth:`ClusterModel.assign` takes: image files, folders of images (searched
#: recursively), PIL images, or any dcframe dataset.
Images = (
    Dataset | str | os.PathLike[str] | Image.Image | Sequence[str | os.PathLike[str] | Image.Image]
)


class GivenImages(Dataset):
    """Image files and PIL images given one by one, folders expanded to the images in them.

    Raises:
        UserError: a path that does not exist, or a folder without any image.
    """

    def __init__(self, images: Sequence[str | os.PathLike[str] | Image.Image]) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # built directly, not from a recipe
        self.items: list[str | Image.Image] = []
        for item in images:
            if isinstance(item, Image.Image):
                self.items.append(item)
            else:
                self.items += _image_paths(Path(item))
        if not self.items:
            raise UserError("IMAGES: no image given; name image files or folders of images")
        self._min_side: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def decode_at_least(self, side: int) -> None:
        self._min_side = side

    def image(self, index: int) -> Image.Image:
        item = self.items[index]
        return open_rgb(item, self._min_side) if isinstance(item, str) else item.convert("RGB")

    def image_id(self, index: int) -> str:
        item = self.items[index]
        return item if isinstance(item, str) else f"image {index}"

    def image_file(self, index: int) -> str | None:
        item = self.items[index]
        return item if isinstance(item, str) else None


def _image_paths(path: Path) -> list[str]:
    """``path`` itself, or the images below the folder ``path``, in sorted order."""
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise UserError(f"IMAGES: {str(path)!r} does not exist; name image files or folders")
    found = sorted(
        str(Path(folder) / name)
        for folder, _, names in os.walk(path, followlinks=True)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not found:
        raise UserError(
            f"IMAGES: the folder {str(path)!r} holds no image (files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}, searched in its sub-folders too)"
        )
    return found


@dataclass
class ClusterModel:
    """An epoch's clustering, ready to place new images (:func:`load_clustering`).

    Attributes:
        epoch: The epoch whose clustering this is.
        source: The ``clusters/epoch_NNNN.npz`` file it was read from.
        recipe: The run's recipe (validated): backbone, preprocessing and clusterer.
        backbone: The trunk that embedded the run's images that epoch, frozen, in eval mode.
        steps: The fitted preprocessing chain.
        clusterers: The clusterer of every head (``clusterer.k``, then ``extra_k``).
        centroids: The centroids of every head.
    """

    epoch: int
    source: Path
    recipe: Any
    backbone: Backbone
    steps: list[Preprocessor]
    clusterers: list[Clusterer]
    centroids: list[np.ndarray]

    @property
    def ks(self) -> list[int]:
        return [len(c) for c in self.centroids]

    def __repr__(self) -> str:
        heads = "+".join(map(str, self.ks))
        return f"ClusterModel(epoch {self.epoch}, k={heads}, {self.source})"

    def place(self, features: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Trunk features (N x ``backbone.feature_dim``) placed in the clusters: (heads, N)
        clusters and the (N,) squared distance to the first head's centroid."""
        rows = np.asarray(features, dtype=np.float32)
        for step in self.steps:
            rows = step.transform(rows)
        placements = [
            clusterer.assign(rows, centroids, device)
            for clusterer, centroids in zip(self.clusterers, self.centroids, strict=True)
        ]
        return np.stack([p.assignments for p in placements]), placements[0].distances

    def assign(
        self,
        images: Images,
        *,
        device: str = "auto",
        batch_size: int = 128,
        workers: int = 0,
        on_bad_image: Literal["fail", "skip"] = "fail",
        max_bad_fraction: float = 1.0,
        reporter: Reporter | None = None,
    ) -> ImageClusters:
        """Place ``images`` in the clusters, in batches (a progress bar with a reporter).

        Args:
            images: Image files, folders (searched recursively), PIL images, or a dataset.
            device: "cpu", "cuda" or "auto" (a GPU when torch sees one).
            batch_size: Images per forward pass.
            workers: Loader processes that decode the images.
            on_bad_image: "fail" at the first unreadable image, or "skip" it (cluster -1).
            max_bad_fraction: With "skip", the largest fraction of unreadable images.
            reporter: Progress and warnings (default: none shown).

        Raises:
            UserError: no such file, an unreadable image under "fail", too many under "skip".
        """
        dataset = images if isinstance(images, Dataset) else GivenImages(_listed(images))
        where = _device(device)
        reporter = reporter or Reporter(quiet=True)
        policy = BadImagePolicy(
            on_bad_image,
            max_bad_fraction,
            len(dataset),
            reporter=reporter,
            how_to_skip='assign with on_bad_image="skip" (--on-bad-image skip) to list it '
            "without a cluster",
        )
        dataset.decode_at_least(
            smallest_side_used(self.backbone.input_size, self.recipe.augment.crop_scale_min)
        )
        features = self._embed(dataset, where, batch_size, workers, policy, reporter)
        readable = policy.readable(np.arange(len(dataset)))
        clusters = np.full((len(self.ks), len(dataset)), -1, dtype=np.int64)
        squared = np.full(len(dataset), np.nan, dtype=np.float32)
        if len(readable):
            with reporter.stage(f"placing {len(readable)} images in {self.ks[0]} clusters"):
                placed, near = self.place(features[readable], where.type)
            clusters[:, readable], squared[readable] = placed, near
        return from_dataset(dataset, self.ks, clusters, squared)

    @torch.no_grad()
    def _embed(
        self,
        dataset: Dataset,
        device: torch.device,
        batch_size: int,
        workers: int,
        policy: BadImagePolicy,
        reporter: Reporter,
    ) -> np.ndarray:
        """The trunk's clustering feature of every image (rows of unreadable ones: zero),
        with the run's autocast precision (``run.amp``)."""
        backbone = self.backbone.to(device)
        transform = clustering_transform(backbone.input_size)
        items = ImageSubset(dataset, transform, np.arange(len(dataset)))
        loader = DataLoader(
            MarkUnreadable(items),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate_readable,
            worker_init_fn=leave_stops_to_the_run,
        )
        precision = amp_dtype(self.recipe.run.amp, device.type == "cuda")
        if precision is torch.float16 and device.type != "cuda":
            precision = None  # fp16 autocast is CUDA's; on the CPU the run could not use it
        autocast = (
            torch.autocast(device.type, dtype=precision)
            if precision is not None
            else contextlib.nullcontext()
        )
        out = np.zeros((len(dataset), backbone.feature_dim), dtype=np.float32)
        for images, index, unreadable in reporter.track(loader, len(loader), "embedding images"):
            policy.check(unreadable)
            if images is None:
                continue
            with autocast:
                embedded = backbone.embed(to_device(images, device))
            out[np.asarray(index)] = embedded.float().cpu().numpy()
        return out


def _device(name: str) -> torch.device:
    """The device ``name`` ("auto": a GPU when torch sees one), checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def _listed(images: Any) -> list[Any]:
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    return list(images)


def load_clustering(path: str | os.PathLike[str], epoch: int | None = None) -> ClusterModel:
    """The clustering of a run's epoch, as a model that places new images.

    Args:
        path: A run directory, or a ``clusters/epoch_NNNN.npz`` file (complete on its own).
        epoch: With a run directory, the epoch (default: the last finished). The run keeps
            the latest epoch's clustering and every ``run.keep_clusters_every``-th.

    Raises:
        UserError: not a run or clustering file, an epoch not kept, or a clustering whose
            preprocessing or clusterer cannot place new images (a plugin without
            ``state_arrays``/``assign``).
    """
    source = Path(path)
    if source.is_file():
        if epoch is not None:
            raise UserError(f"--epoch needs a run directory; {str(source)!r} is a file")
    else:
        rundir = run_directory(source)
        epoch = finished_epochs(rundir) - 1 if epoch is None else epoch
        kept = clusterings.kept_epochs(rundir.path)
        if epoch not in kept:
            raise UserError(
                f"--epoch {epoch}: {rundir.path} did not keep the clustering of epoch {epoch} "
                f"(kept: {', '.join(map(str, kept)) or 'none'}); a run keeps the latest epoch's "
                "and every run.keep_clusters_every-th (`dcframe clusters` lists the images of "
                "any epoch)"
            )
        source = rundir.clustering_path(epoch)
    return _model(clusterings.load(source), source)


def _model(saved: clusterings.SavedClustering, source: Path) -> ClusterModel:
    """The components of ``saved``'s recipe, with its weights and fitted state."""
    from dcframe.recipe import validate

    recipe = validate(tomllib.loads(saved.recipe))
    clusterer = kinds.clusterers.get(recipe.clusterer.name).cls(recipe.clusterer)
    problems = [reason for reason in saved.missing if reason.startswith("preprocess")]
    if not clusterer.places_new_rows():
        problems.append(
            f"the clusterer {recipe.clusterer.name!r} ({type(clusterer).__name__}) does not "
            "implement assign(), so its clusters are not defined for new images"
        )
    if problems:
        raise UserError(
            f"{source}: new images cannot be placed in these clusters: {'; '.join(problems)} "
            "(a plugin's component lacks it; `dcframe clusters` still lists the run's images)"
        )
    backbone = kinds.backbones.get(recipe.backbone.name).cls(recipe.backbone)
    load_weights(backbone, {k: torch.from_numpy(v) for k, v in saved.trunk.items()}, source)
    backbone.eval().requires_grad_(False)
    steps = [kinds.preprocessors.get(p.name).cls(p) for p in recipe.preprocess]
    for i, (step, arrays) in enumerate(zip(steps, saved.steps, strict=True)):
        try:
            step.load_state_arrays(arrays or {})
        except (KeyError, ValueError) as error:
            raise UserError(
                f"{source}: preprocess[{i}]'s saved state is damaged ({error})"
            ) from error
    extra = [with_k(clusterer, head.k) for head in saved.heads[1:]]
    return ClusterModel(
        epoch=saved.epoch,
        source=source,
        recipe=recipe,
        backbone=backbone,
        steps=steps,
        clusterers=[clusterer, *extra],
        centroids=[head.centroids for head in saved.heads],
    )
