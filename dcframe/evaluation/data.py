"""The labelled train/validation images of an evaluation, and loaders over them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dcframe.components.datasets import (
    ImageFolder,
    ImageFolderParams,
    SklearnDigits,
    SklearnDigitsParams,
)
from dcframe.errors import UserError
from dcframe.evaluation.options import DataOptions
from dcframe.extraction import ImageSubset
from dcframe.interfaces import Dataset


@dataclass(frozen=True)
class Split:
    """Images ``indices`` of ``dataset`` and their class ids ``labels`` (aligned)."""

    dataset: Dataset
    indices: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class EvalData:
    """A train and a validation split sharing the same classes."""

    train: Split
    val: Split
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def info(self, options: DataOptions) -> dict[str, Any]:
        """JSON description for result files."""
        return {
            **options.model_dump(mode="json"),
            "train_images": len(self.train),
            "val_images": len(self.val),
            "classes": self.class_names,
        }


def load_data(options: DataOptions, seed: int) -> EvalData:
    """The two splits ``options`` describe, each limited to a stratified subset if asked.

    Raises:
        UserError: missing folders, unlabelled images (a flat folder), or train and
            validation folders with different classes.
    """
    if options.dataset == "sklearn-digits":
        train: Dataset = SklearnDigits(SklearnDigitsParams(split="train"))
        val: Dataset = SklearnDigits(SklearnDigitsParams(split="test"))
    else:
        assert options.train_dir is not None and options.val_dir is not None  # validated
        train = _labelled_folder(options.train_dir, "--train-dir")
        val = _labelled_folder(options.val_dir, "--val-dir")
    if train.class_names != val.class_names:
        raise UserError(
            f"--train-dir and --val-dir have different classes: {train.class_names} vs "
            f"{val.class_names}; both need the same class sub-folders"
        )
    assert train.class_names is not None and val.labels is not None and train.labels is not None
    return EvalData(
        train=_split(train.labels, train, options.limit_train, seed),
        val=_split(val.labels, val, options.limit_val, seed),
        class_names=train.class_names,
    )


def _labelled_folder(root: str, option: str) -> Dataset:
    dataset = ImageFolder(ImageFolderParams(root=root))
    if dataset.labels is None:
        raise UserError(
            f"{option} {root!r}: the images carry no labels (a flat folder); evaluation needs "
            "one sub-folder per class"
        )
    return dataset


def _split(labels: np.ndarray, dataset: Dataset, limit: int | None, seed: int) -> Split:
    indices = stratified_subset(labels, limit, seed)
    return Split(dataset, indices, labels[indices])


def stratified_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``limit`` items keeping the class proportions (all if ``limit``
    is None or not smaller than the number of items).

    Each item gets its rank within its class in a seeded random order, divided by the class
    size; taking the ``limit`` smallest values draws every class in turn in proportion to
    its size, so the subset is fixed for a seed and each class gets its share (+-1).
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    order = np.random.default_rng(seed).permutation(n)
    rank = np.empty(n, dtype=np.float64)
    _, class_ids, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    for c, size in enumerate(sizes):
        members = order[class_ids[order] == c]
        rank[members] = np.arange(size) / size
    return np.sort(np.argsort(rank, kind="stable")[:limit])


def image_loader(
    split: Split,
    transform: Callable[[Any], torch.Tensor],
    batch_size: int,
    workers: int,
    shuffle_seed: int | None = None,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """Batches of (transformed images, class ids) of ``split``, in order unless a shuffle seed
    is given."""
    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(
        ImageSubset(split.dataset, transform, split.indices, split.labels),
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=generator,
        num_workers=workers,
    )
