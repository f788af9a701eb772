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
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Clustering features (eval mode, no top layer) of ``indices``, batch by batch.

    Yields (dataset indices, float32 features) pairs.
    """
    backbone.eval()
    subset = ImageSubset(dataset, clustering_transform(backbone.input_size), indices)
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers)
    for images, index in reporter.track(loader, len(loader), description):
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
) -> np.ndarray:
    """The preprocessed clustering features of every image, row ``i`` = image ``i``.

    Each preprocessing step is (re)fitted from scratch on a random sample of rows already
    passed through the steps before it.
    """
    n = len(dataset)
    fit_rows = max((step.fit_sample_size(n) for step in chain), default=0)
    order = sample_rng.permutation(n)
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
    )

    fitted = np.empty((len(sample), backbone.feature_dim), dtype=np.float32)
    for index, features in embed(sample, description="fit sample"):
        fitted[np.searchsorted(sample, index)] = features
    for step in chain:
        wanted = step.fit_sample_size(n)
        if wanted:
            # Fancy indexing copies: only subsample when the step wants fewer rows.
            fit_on = fitted
            if wanted < len(fitted):
                fit_on = fitted[sample_rng.choice(len(fitted), wanted, replace=False)]
            step.fit(fit_on)
            del fit_on
        fitted = _transform_in_blocks(step, fitted)

    out_dim = fitted.shape[1] if len(sample) else _output_dim(chain, backbone.feature_dim)
    out = np.empty((n, out_dim), dtype=np.float32)
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
