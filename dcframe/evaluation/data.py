"""The labelled train/validation images of an evaluation, and loaders over them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from dcframe.core import kinds
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Dataset
from dcframe.core.params import Params
from dcframe.core.stop_signals import leave_stops_to_the_run
from dcframe.evaluation.hints import VAL_DIR
from dcframe.evaluation.options import DataOptions, DatasetChoice


class ImageSubset(TorchDataset[tuple[torch.Tensor, int]]):
    """Images ``indices`` of a dcframe dataset, transformed, each paired with a target.

    The target is ``targets[i]`` when targets are given (the labels), else the dataset
    index itself (so extracted rows can be put back in place).
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[..., torch.Tensor],
        indices: np.ndarray,
        targets: np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = indices
        self.targets = targets

    def __len__(self) -> int:
        return len(self.indices)

    def dataset_index(self, i: int) -> int:
        return int(self.indices[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[i])
        target = index if self.targets is None else int(self.targets[i])
        return self.transform(self.dataset.image(index)), target


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


def _values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``key=value`` strings as a dict; a value that is a TOML array becomes a list, every
    other value stays text for the dataset's model to read (``3`` -> 3 for an int field)."""
    from dcframe.recipe import parse_value

    values: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise UserError(f"{flag} {pair!r}: write KEY=VALUE, e.g. {flag} root=/data/train")
        parsed = parse_value(text) if text.strip().startswith("[") else text
        values[key.strip()] = parsed
    return values


def _choice(name: str, values: dict[str, Any], flag: str) -> DatasetChoice:
    """``name`` from the dataset registry with ``values`` validated by its Params model."""
    entry = kinds.datasets.get(name)  # unknown names: suggestions and what is installed
    model: type[Params] = entry.params_model
    try:
        params = model.model_validate(values, strict=False)  # command-line text, read as typed
    except ValidationError as error:
        problems = []
        for e in error.errors():
            key = ".".join(str(part) for part in e["loc"])
            if e["type"] == "extra_forbidden":
                known = ", ".join(model.model_fields) or "no parameters"
                message = f"unknown key for {name} (it takes: {known})"
            elif e["type"] == "missing":
                message = f"required; add {flag} {key}=VALUE"
            else:
                message = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{flag} {key}: {message}")
        raise UserError(
            f"invalid dataset parameters ({name}):\n  " + "\n  ".join(problems)
        ) from None
    return DatasetChoice(name=name, params=params)


def data_options(
    data: str | None,
    data_set: list[str],
    val_data: str | None,
    val_set: list[str],
    train_dir: str | None = None,
    val_dir: str | None = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    own_data: tuple[str, str] | None = None,
) -> DataOptions:
    """The train and validation datasets the command line names, validated.

    ``--data NAME --data-set KEY=VALUE ...`` gives the training images. Validation images
    are ``--val-data NAME --val-set KEY=VALUE ...``; without ``--val-data``, the same
    dataset with the training parameters changed by ``--val-set``. A dataset with a
    ``split`` parameter (sklearn-digits, cifar10, mnist, ...) defaults to ``split=train``
    for training and ``split=test`` for validation. ``--train-dir A --val-dir B`` is short
    for ``--data imagefolder --data-set root=A --val-set root=B``. ``own_data``, whose
    data (e.g. "the run's own (runs/x)") and its flags (:mod:`dcframe.evaluation.hints`),
    is what a missing ``--data`` suggests.
    """
    if train_dir is not None or val_dir is not None:
        if data not in (None, "imagefolder") or val_data is not None:
            raise UserError("--train-dir/--val-dir are image folders; drop --data/--val-data")
        if train_dir is None or val_dir is None:
            raise UserError("image folders need both --train-dir and --val-dir")
        data = "imagefolder"
        data_set = [f"root={train_dir}", *data_set]
        val_set = [f"root={val_dir}", *val_set]
    if data is None and own_data is not None:
        whose, flags = own_data
        val_dir = (
            " (VAL_DIR: labelled images, one sub-folder per class)" if VAL_DIR in flags else ""
        )
        raise UserError(
            f"choose the labelled data: {whose} is {flags}{val_dir}; any labelled dataset "
            "works: --data NAME [--data-set KEY=VALUE ...] or --train-dir DIR --val-dir DIR"
        )
    if data is None:
        raise UserError(
            "choose the labelled data: --data NAME [--data-set KEY=VALUE ...] (e.g. --data "
            "sklearn-digits, or --data imagefolder --data-set root=DIR --val-set root=DIR)"
        )
    train_values = _values(data_set, "--data-set")
    given_val = _values(val_set, "--val-set")
    val_name = val_data or data
    val_values = dict(train_values) if val_data is None else {}
    has_split = {
        name: "split" in kinds.datasets.get(name).params_model.model_fields
        for name in {data, val_name}
    }
    if has_split[data]:
        train_values.setdefault("split", "train")
    if has_split[val_name] and "split" not in given_val:
        val_values["split"] = "test"
    elif val_data is None and not given_val:
        raise UserError(
            f"--data {data}: give validation images too, e.g. --val-set root=/path/to/val "
            "(the same dataset with other parameters) or --val-data NAME --val-set KEY=VALUE"
        )
    val_values |= given_val
    train = _choice(data, train_values, "--data-set")
    val = _choice(val_name, val_values, "--val-set")
    try:
        return DataOptions(train=train, val=val, limit_train=limit_train, limit_val=limit_val)
    except ValidationError as error:  # only the limits can be wrong here
        problems = [f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in error.errors()]
        raise UserError("invalid options:\n  " + "\n  ".join(problems)) from None


def load_data(options: DataOptions, seed: int) -> EvalData:
    """The two splits ``options`` describe, each limited to a stratified subset if asked.

    Raises:
        UserError: missing data, unlabelled images (e.g. a flat folder), or train and
            validation data with different classes.
    """
    train = _labelled(options.train, "--data", "--data-set")
    val = _labelled(options.val, "--val-data", "--val-set")
    if train.class_names != val.class_names:
        raise UserError(
            f"the training and validation data have different classes: {train.class_names} "
            f"vs {val.class_names}; both need the same classes"
        )
    assert train.class_names is not None and val.labels is not None and train.labels is not None
    return EvalData(
        train=_split(train.labels, train, options.limit_train, seed),
        val=_split(val.labels, val, options.limit_val, seed),
        class_names=train.class_names,
    )


def named_dataset(
    name: str, pairs: list[str], flag: str = "--data", set_flag: str = "--data-set"
) -> Dataset:
    """The dataset ``name`` with its ``KEY=VALUE`` parameters ``pairs``, as a command line
    gives them; its errors name the command's flags."""
    return _built(_choice(name, _values(pairs, set_flag), set_flag), flag, set_flag)


def _built(choice: DatasetChoice, flag: str, set_flag: str) -> Dataset:
    """The dataset of ``choice``; its errors name ``flag`` and ``set_flag``."""
    try:
        return kinds.datasets.get(choice.name).cls(choice.params)
    except UserError as error:
        # A dataset names its parameters as a recipe does (data.root); say it in flags.
        message = str(error).replace("--set data.", f"{set_flag} ").replace("data.", f"{set_flag} ")
        raise UserError(f"{flag} {choice.name}: {message}") from error


def _labelled(choice: DatasetChoice, flag: str, set_flag: str) -> Dataset:
    """The dataset of ``choice``; its errors say which side (train or validation) they are."""
    dataset = _built(choice, flag, set_flag)
    if dataset.labels is None or dataset.class_names is None:
        raise UserError(
            f"{flag} {choice.name}: the images carry no labels (e.g. a flat folder); "
            "evaluation needs labelled images (one sub-folder per class, a label column, ...)"
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
        worker_init_fn=leave_stops_to_the_run,  # the main process alone decides (see there)
    )
