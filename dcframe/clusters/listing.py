"""Images and their clusters, as a table: one row per image, whatever produced them.

:func:`run_clusters` reads a run's own clustering of an epoch (``dcframe clusters``);
:meth:`dcframe.clusters.model.ClusterModel.assign` places new images
(``dcframe assign``). Both give an :class:`ImageClusters`, which the writers of
:mod:`dcframe.clusters.output` turn into a file or folders.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dcframe.core import kinds
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Dataset
from dcframe.store import clusterings
from dcframe.store.rundir import RunDirectory

RECIPE_FILE = "recipe.toml"


@dataclass(frozen=True)
class ImageClusters:
    """Images and their cluster in each head.

    Attributes:
        ids: How each image is found: its path, a shard member, or its dataset position.
        files: The file holding each image alone (what a folder links to), or None.
        ks: The k of every head: ``clusterer.k``, then each ``clusterer.extra_k`` kept.
        clusters: (heads, N) int64 cluster of every image (-1: left out as unreadable).
        distances: (N,) float32 Euclidean distance to its centroid in the first head (NaN:
            left out), in the preprocessed feature space the clusters live in.
        labels: Each image's class name, where the dataset has labels.
        image: Decodes image ``i`` (for folders of images that have no file of their own).
    """

    ids: list[str]
    files: list[str | None]
    ks: list[int]
    clusters: np.ndarray
    distances: np.ndarray
    labels: list[str] | None
    image: Callable[[int], Image.Image]

    def __len__(self) -> int:
        return len(self.ids)

    def ranks(self) -> np.ndarray:
        """(N,) rank of every image within its cluster of the first head, 1 for the nearest
        to the centroid (ties by position); 0 for images left out."""
        clusters = self.clusters[0]
        order = np.lexsort((np.arange(len(self)), self.distances, clusters))
        ranks = np.zeros(len(self), dtype=np.int64)
        ordered = clusters[order]
        starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
        position = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        ranks[order] = position + 1
        ranks[clusters < 0] = 0
        return ranks

    def columns(self) -> list[str]:
        extra = [f"cluster_k{k}" for k in self.ks[1:]]
        label = ["label"] if self.labels is not None else []
        return ["index", "image", "cluster", "distance", "rank", *label, *extra]

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per image, keys :meth:`columns`; None for what a left-out image lacks."""
        ranks = self.ranks()
        for i, image_id in enumerate(self.ids):
            placed = self.clusters[0, i] >= 0
            distance = float(self.distances[i])
            row: dict[str, Any] = {
                "index": i,
                "image": image_id,
                "cluster": int(self.clusters[0, i]) if placed else None,
                "distance": round(distance, 6) if placed and math.isfinite(distance) else None,
                "rank": int(ranks[i]) if placed else None,
            }
            if self.labels is not None:
                row["label"] = self.labels[i]
            for k, clusters in zip(self.ks[1:], self.clusters[1:], strict=True):
                row[f"cluster_k{k}"] = int(clusters[i]) if clusters[i] >= 0 else None
            yield row


def label_names(dataset: Dataset) -> list[str] | None:
    """Each image's class name (its class id as text where the dataset names none)."""
    labels = dataset.labels
    if labels is None:
        return None
    names = dataset.class_names
    return [names[c] if names is not None and c < len(names) else str(c) for c in labels]


def from_dataset(
    dataset: Dataset, ks: list[int], clusters: np.ndarray, squared: np.ndarray
) -> ImageClusters:
    """The clusters of every image of ``dataset`` (squared distances as the run saves them)."""
    with np.errstate(invalid="ignore"):
        distances = np.sqrt(squared.astype(np.float32))
    return ImageClusters(
        ids=[dataset.image_id(i) for i in range(len(dataset))],
        files=[dataset.image_file(i) for i in range(len(dataset))],
        ks=ks,
        clusters=clusters,
        distances=distances,
        labels=label_names(dataset),
        image=dataset.image,
    )


def run_directory(given: str | os.PathLike[str]) -> RunDirectory:
    """``given`` as a run directory.

    Raises:
        UserError: it is not a folder holding a dcframe run.
    """
    path = Path(given)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is a file"
        raise UserError(f"{str(path)!r} {what}; give a run directory (e.g. runs/quickstart)")
    if not (path / RECIPE_FILE).is_file():
        raise UserError(
            f"{str(path)!r} is not a dcframe run directory (no {RECIPE_FILE}); give the folder "
            "`dcframe run` printed (e.g. runs/quickstart)"
        )
    return RunDirectory(path)


def finished_epochs(rundir: RunDirectory) -> int:
    """How many epochs the run has finished (its records in ``metrics.jsonl``).

    Raises:
        UserError: none yet.
    """
    finished = len(rundir.metrics())
    if finished == 0:
        raise UserError(
            f"{rundir.path} has no finished epoch yet: its clusters exist once epoch 0 is done"
        )
    return finished


def run_recipe(rundir: RunDirectory) -> Any:
    """The run's saved recipe, validated."""
    from dcframe.recipe import validate

    return validate(tomllib.loads(rundir.recipe_path.read_text(encoding="utf-8")))


def run_dataset(rundir: RunDirectory, recipe: Any = None) -> Dataset:
    """The run's dataset, built from its saved recipe.

    Raises:
        UserError: the data is gone or moved (the dataset's own message, naming the run).
    """
    recipe = recipe or run_recipe(rundir)
    try:
        return kinds.datasets.get(recipe.data.name).cls(recipe.data)
    except UserError as error:
        raise UserError(
            f"the images of {rundir.path} cannot be opened ({error}); the run's recipe "
            f"({rundir.recipe_path}) names them"
        ) from error


def run_clusters(run_dir: str | os.PathLike[str], epoch: int | None = None) -> ImageClusters:
    """The clustering of ``epoch`` (default: the last finished) of every image of the run.

    Every epoch keeps its first head (``assignments/``, ``distances/``); the epochs whose
    clustering the run keeps (``clusters/``) add the heads of ``clusterer.extra_k``.

    Raises:
        UserError: not a run, no such epoch, a damaged file, or the run's images changed.
    """
    rundir = run_directory(run_dir)
    finished = finished_epochs(rundir)
    epoch = finished - 1 if epoch is None else epoch
    if not rundir.assignment_path(epoch).is_file():
        raise UserError(
            f"--epoch {epoch}: {rundir.path} has no clustering of epoch {epoch} (it has "
            f"finished epochs 0 to {finished - 1}); leave out --epoch for the last"
        )
    recipe = run_recipe(rundir)
    if rundir.clustering_path(epoch).is_file():
        saved = clusterings.load(rundir.clustering_path(epoch))
        ks = [head.k for head in saved.heads]
        clusters = np.stack([head.assignment for head in saved.heads])
        squared = saved.heads[0].distances
    else:  # an epoch whose clustering was not kept: its first head only
        ks = [recipe.clusterer.k]
        clusters = _saved_array(rundir.assignment_path(epoch))[None]
        distances = rundir.distances_path(epoch)
        squared = (
            _saved_array(distances)
            if distances.is_file()
            else np.full(clusters.shape[1], np.nan, np.float32)
        )
    dataset = run_dataset(rundir, recipe)
    if len(dataset) != clusters.shape[1]:
        raise UserError(
            f"the run's images changed since it ran: its dataset now has {len(dataset)} images, "
            f"its clustering of epoch {epoch} {clusters.shape[1]}; restore the images it was "
            f"trained on ({rundir.recipe_path} names them)"
        )
    return from_dataset(dataset, ks, clusters, squared)


def _saved_array(path: Path) -> np.ndarray:
    """One of the run's ``.npy`` files (read without unpickling)."""
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror or error})") from error
    except (ValueError, EOFError) as error:  # numpy's text would suggest unpickling it
        raise UserError(
            f"{path} is not an array file as dcframe writes them (damaged or replaced outside "
            "dcframe); restore it from a backup"
        ) from error
