"""Feature extraction for clustering, with the preprocessing chain fitted on a sample.

The paper keeps an N x 4096 float32 matrix (21 GB on ImageNet) and fits PCA on all of
it. dcframe extracts a random sample of the images first, fits the preprocessing chain
on that sample, then streams the remaining images through the fitted chain, so only
``sample x 4096`` plus ``N x 256`` floats are ever held. With the sample covering the
whole dataset (the default when N <= ``pca.fit_sample``) this is exactly the paper's
computation; every image is still extracted exactly once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from dcframe.bad_images import BadImagePolicy, MarkUnreadable, collate_readable
from dcframe.interfaces import Backbone, Dataset, Preprocessor
from dcframe.progress import Reporter
from dcframe.transforms import clustering_transform


class ImageSubset(TorchDataset[tuple[torch.Tensor, int]]):
    """Images ``indices`` of a dcframe dataset, transformed, each paired with a target.

    The target is ``targets[i]`` when targets are given (pseudo-labels for training),
    else the dataset index itself (so extracted rows can be put back in place).
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Any], torch.Tensor],
        indices: np.ndarray,
        targets: np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = indices
        self.targets = targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[i])
        target = index if self.targets is None else int(self.targets[i])
        return self.transform(self.dataset.image(index)), target


def run_loader(
    subset: ImageSubset, *, batch_size: int, workers: int, pin_memory: bool = False
) -> DataLoader[Any]:
    """Batches of ``(images, targets, unreadable)`` for a run's passes: an image the dataset
    cannot read becomes an entry of ``unreadable`` instead of an exception (see
    :mod:`dcframe.bad_images`); ``images`` is None when no image of a batch was readable."""
    return DataLoader(
        MarkUnreadable(subset),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate_readable,
    )


@torch.no_grad()
def embed_batches(
    backbone: Backbone,
    dataset: Dataset,
    indices: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    workers: int,
    autocast: Callable[[], AbstractContextManager[Any]],
    reporter: Reporter,
    description: str,
    bad_images: BadImagePolicy | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Clustering features (eval mode, no top layer) of ``indices``, batch by batch.

    Yields (dataset indices, float32 features) pairs of the readable images; unreadable
    ones go to ``bad_images`` (default: fail at the first).
    """
    backbone.eval()
    policy = bad_images or BadImagePolicy()
    subset = ImageSubset(dataset, clustering_transform(backbone.input_size), indices)
    loader = run_loader(subset, batch_size=batch_size, workers=workers)
    for images, index, unreadable in reporter.track(loader, len(loader), description):
        policy.check(unreadable)
        if images is None:
            continue
        with autocast():
            features = backbone.embed(images.to(device, non_blocking=True))
        yield index.numpy(), features.float().cpu().numpy()


def _apply(chain: list[Preprocessor], x: np.ndarray) -> np.ndarray:
    for step in chain:
        x = step.transform(x)
    return x


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    chain: list[Preprocessor],
    *,
    sample_rng: np.random.Generator,
    batch_size: int,
    device: torch.device,
    workers: int,
    autocast: Callable[[], AbstractContextManager[Any]],
    reporter: Reporter,
    bad_images: BadImagePolicy | None = None,
) -> np.ndarray:
    """The preprocessed clustering features of every image, row ``i`` = image ``i``.

    Each preprocessing step is (re)fitted from scratch on a random sample of rows already
    passed through the steps before it. Images left out by ``bad_images`` (already, or
    found unreadable now) are not extracted; their rows hold zeros.
    """
    n = len(dataset)
    order = sample_rng.permutation(n)
    policy = bad_images or BadImagePolicy()
    order = policy.readable(order)
    fit_rows = max((step.fit_sample_size(len(order)) for step in chain), default=0)
    sample, rest = np.sort(order[:fit_rows]), np.sort(order[fit_rows:])
    embed = functools.partial(
        embed_batches,
        backbone,
        dataset,
        batch_size=batch_size,
        device=device,
        workers=workers,
        autocast=autocast,
        reporter=reporter,
        bad_images=policy,
    )

    fitted = np.empty((len(sample), backbone.feature_dim), dtype=np.float32)
    for index, features in embed(sample, description="fit sample"):
        fitted[np.searchsorted(sample, index)] = features
    if policy.skipped and len(readable := policy.readable(sample)) < len(sample):
        fitted = fitted[np.isin(sample, readable)]  # images found unreadable just now
        sample = readable
    for step in chain:
        wanted = step.fit_sample_size(len(fitted))
        if wanted:
            # Fancy indexing copies: only subsample when the step wants fewer rows.
            fit_on = fitted
            if wanted < len(fitted):
                fit_on = fitted[sample_rng.choice(len(fitted), wanted, replace=False)]
            step.fit(fit_on)
            del fit_on
        fitted = _transform_in_blocks(step, fitted)

    out_dim = fitted.shape[1] if len(sample) else _output_dim(chain, backbone.feature_dim)
    out = np.zeros((n, out_dim), dtype=np.float32)  # rows of unreadable images stay zero
    out[sample] = fitted
    del fitted
    for index, features in embed(rest, description="extract"):
        out[index] = _apply(chain, features)
    return out


def _transform_in_blocks(step: Preprocessor, x: np.ndarray, block_rows: int = 16384) -> np.ndarray:
    """``step.transform(x)`` block by block, so the step's temporaries (a centred copy for
    PCA) stay the size of a block instead of the size of the whole sample."""
    out = np.empty((len(x), step.output_dim(x.shape[1])), dtype=np.float32)
    for start in range(0, len(x), block_rows):
        out[start : start + block_rows] = step.transform(x[start : start + block_rows])
    return out


def _output_dim(chain: list[Preprocessor], dim: int) -> int:
    for step in chain:
        dim = step.output_dim(dim)
    return dim
