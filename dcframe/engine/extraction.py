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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from dcframe.core.distributed import World
from dcframe.core.interfaces import Backbone, Dataset, Preprocessor
from dcframe.core.progress import Reporter
from dcframe.data.bad_images import BadImagePolicy
from dcframe.data.loading import CLUSTERING, CLUSTERING_PIXELS, RunLoader
from dcframe.data.prefetch import prefetched
from dcframe.data.transforms import normalise_pixels
from dcframe.data.view_cache import ClusteringViewCache
from dcframe.engine.devices import to_device

# Receives (dataset indices, raw float32 features) of every batch embedded.
Sink = Callable[[np.ndarray, np.ndarray], None]

COLLAPSE = "feature collapse: every image has the same feature (zero variance)"


def collapse_notes(raw: np.ndarray, tolerance: float = 1e-5) -> list[str]:
    """``[COLLAPSE]`` when every row of the raw (not yet preprocessed) features is the same.

    Checked before the preprocessing because PCA whitening rescales whatever variance is
    left, even float rounding between batches, and the L2 step then makes those rounding
    differences unit-length rows: a collapse is only visible in the network's own output.
    "The same" is relative to the features' magnitude, so rounding does not hide it.
    """
    if len(raw) < 2:
        return []
    spread = float(np.ptp(raw, axis=0).max())
    return [COLLAPSE] if spread <= tolerance * float(np.abs(raw).max()) else []


class ImageSubset(TorchDataset[tuple[torch.Tensor, int]]):
    """Images ``indices`` of a dcframe dataset, transformed, each paired with a target.

    The target is ``targets[i]`` when targets are given (pseudo-labels for training),
    else the dataset index itself (so extracted rows can be put back in place). With
    ``seeds``, the transform is called as ``transform(image, seeds[i])`` and draws its
    randomness from that seed alone (:class:`~dcframe.data.transforms.TrainingView`): the same
    crop whichever process, worker or thread loads it, and whenever.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[..., torch.Tensor],
        indices: np.ndarray,
        targets: np.ndarray | None = None,
        seeds: np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = indices
        self.targets = targets
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.indices)

    def dataset_index(self, i: int) -> int:
        return int(self.indices[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[i])
        target = index if self.targets is None else int(self.targets[i])
        image = self.dataset.image(index)
        if self.seeds is None:
            return self.transform(image), target
        return self.transform(image, int(self.seeds[i])), target


@torch.no_grad()
def embed_batches(
    backbone: Backbone,
    loader: RunLoader,
    indices: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    reporter: Reporter,
    description: str,
    bad_images: BadImagePolicy | None = None,
    view_cache: ClusteringViewCache | None = None,
    sink: Sink | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Clustering features (eval mode, no top layer) of ``indices``, batch by batch.

    Yields (dataset indices, float32 features) pairs of the readable images; unreadable
    ones go to ``bad_images`` (default: fail at the first). With ``view_cache``, images
    already cached are read from it and the others are decoded and stored in it. ``sink``
    also gets every pair, before any preprocessing.
    """
    backbone.eval()
    policy = bad_images or BadImagePolicy()
    batches = (
        _decoded_views(loader, indices, batch_size, policy)
        if view_cache is None
        else _cached_views(loader, indices, view_cache, batch_size, policy)
    )
    batches = batches if loader.workers else prefetched(batches)
    for index, images in reporter.track(batches, -(-len(indices) // batch_size), description):
        with autocast():
            features = backbone.embed(to_device(images, device))
        rows = features.float().cpu().numpy()
        if sink is not None:
            sink(index, rows)
        yield index, rows


def _decoded_views(
    loader: RunLoader, indices: np.ndarray, batch_size: int, policy: BadImagePolicy
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(indices, normalised images) batches, every image decoded."""
    for images, index, unreadable in loader.views_of(CLUSTERING, indices, batch_size):
        policy.check(unreadable)
        if images is not None:
            yield index.numpy(), images


def _cached_views(
    loader: RunLoader,
    indices: np.ndarray,
    cache: ClusteringViewCache,
    batch_size: int,
    policy: BadImagePolicy,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(indices, normalised images) batches: first the images the cache lacks, decoded and
    stored, then the cached ones, read in batches."""
    missing = indices[~cache.filled[indices]]
    for pixels, index, unreadable in loader.views_of(CLUSTERING_PIXELS, missing, batch_size):
        policy.check(unreadable)
        if pixels is not None:
            cache.store(index.numpy(), pixels.numpy())
            yield index.numpy(), normalise_pixels(pixels)
    cached = indices[np.isin(indices, missing, invert=True)]
    for start in range(0, len(cached), batch_size):
        index = cached[start : start + batch_size]
        yield index, normalise_pixels(torch.from_numpy(cache.pixels[index]))


def _apply(chain: list[Preprocessor], x: np.ndarray) -> np.ndarray:
    for step in chain:
        x = step.transform(x)
    return x


@dataclass(frozen=True)
class FeatureShard:
    """One process's rows of the preprocessed features (for a clusterer that clusters the
    rows where they are): ``rows[j]`` is the feature of image ``index[j]``."""

    index: np.ndarray
    rows: np.ndarray


def extract_features(
    backbone: Backbone,
    loader: RunLoader,
    chain: list[Preprocessor],
    *,
    sample_rng: np.random.Generator,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    reporter: Reporter,
    bad_images: BadImagePolicy | None = None,
    world: World | None = None,
    view_cache: ClusteringViewCache | None = None,
    sink: Sink | None = None,
    notes: list[str] | None = None,
) -> np.ndarray | None:
    """The preprocessed clustering features of every image, row ``i`` = image ``i``.

    Each preprocessing step is (re)fitted from scratch on a random sample of rows already
    passed through the steps before it. Images left out by ``bad_images`` (already, or
    found unreadable now) are not extracted; their rows hold zeros.

    In a distributed run (``world``) every process embeds its share of the sample and of
    the other images; the main process fits the chain, sends the fitted steps to every
    process, and receives every row: it returns the matrix, the other processes None.
    ``sink`` gets the raw features of the images this process embeds; ``notes``, on the
    main process, what :func:`collapse_notes` found in the raw features of the sample.
    """
    args = (backbone, loader, chain, sample_rng, batch_size, device, autocast)
    policy = bad_images or BadImagePolicy()
    where = (reporter, policy, world or World(), True, view_cache, sink, notes)
    gathered, _ = _extract(*args, *where)
    return gathered


def extract_feature_shards(
    backbone: Backbone,
    loader: RunLoader,
    chain: list[Preprocessor],
    *,
    sample_rng: np.random.Generator,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    reporter: Reporter,
    bad_images: BadImagePolicy,
    world: World,
    view_cache: ClusteringViewCache | None = None,
    sink: Sink | None = None,
    notes: list[str] | None = None,
) -> FeatureShard:
    """As :func:`extract_features`, but every process keeps the rows it embedded (readable
    images only): no process ever holds the N x d matrix."""
    args = (backbone, loader, chain, sample_rng, batch_size, device, autocast)
    _, shard = _extract(*args, reporter, bad_images, world, False, view_cache, sink, notes)
    assert shard is not None
    return shard


def _extract(
    backbone: Backbone,
    loader: RunLoader,
    chain: list[Preprocessor],
    sample_rng: np.random.Generator,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    reporter: Reporter,
    policy: BadImagePolicy,
    world: World,
    gather: bool,
    view_cache: ClusteringViewCache | None,
    sink: Sink | None,
    notes: list[str] | None,
) -> tuple[np.ndarray | None, FeatureShard | None]:
    n = len(loader.dataset)
    order = policy.readable(sample_rng.permutation(n))
    fit_rows = max((step.fit_sample_size(len(order)) for step in chain), default=0)
    sample, rest = np.sort(order[:fit_rows]), np.sort(order[fit_rows:])
    embed = functools.partial(
        embed_batches,
        backbone,
        loader,
        batch_size=batch_size,
        device=device,
        autocast=autocast,
        reporter=reporter,
        bad_images=policy,
        view_cache=view_cache,
        sink=sink,
    )
    width = backbone.feature_dim
    fitted = np.empty((len(sample), width), dtype=np.float32) if world.is_main else None

    def in_sample(index: np.ndarray) -> np.ndarray:
        return np.searchsorted(sample, index)

    if gather:
        _embed_into(world, embed, sample, in_sample, fitted, [], width)
    else:  # keep this process's raw rows: they are transformed here once the chain is fitted
        raw_index, raw = _embed_shard(world, embed, sample, [], width)
        world.gather_rows(in_sample(raw_index), raw, fitted)
    policy.skipped.update(world.union(policy.skipped))

    kept: dict[str, np.ndarray] = {}

    def fit_on_main() -> list[dict[str, Any]]:
        assert fitted is not None
        if notes is not None:
            notes.extend(collapse_notes(fitted))
        kept["rows"], kept["sample"] = fit_chain(chain, fitted, sample, policy, sample_rng)
        return [fitted_state(step) for step in chain]

    states = world.run_on_main(fit_on_main)  # fitted once, the same on every process
    if not world.is_main:
        for step, state in zip(chain, states, strict=True):
            load_fitted_state(step, state)
    out_dim = _output_dim(chain, width)
    if not gather:
        rest_index, rest_rows = _embed_shard(world, embed, rest, chain, out_dim)
        policy.skipped.update(world.union(policy.skipped))
        index = np.concatenate([raw_index, rest_index])
        rows = np.concatenate([_transform_chain(chain, raw), rest_rows])
        order = np.argsort(index, kind="stable")
        keep = order[~np.isin(index[order], list(policy.skipped))]
        return None, FeatureShard(index[keep], rows[keep])
    out = None
    if world.is_main:
        out = np.zeros((n, out_dim), dtype=np.float32)  # rows of unreadable images stay zero
        out[kept["sample"]] = kept.pop("rows")
    _embed_into(world, embed, rest, lambda index: index, out, chain, out_dim)
    policy.skipped.update(world.union(policy.skipped))
    if out is not None and notes is not None and not chain:  # no sample: the rows are raw
        notes.extend(collapse_notes(out[policy.readable(np.arange(n))]))
    return out, None


def _embed_shard(
    world: World,
    embed: Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]],
    items: np.ndarray,
    chain: list[Preprocessor],
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """This process's share of ``items`` (sorted dataset indices) and their rows through
    ``chain`` (``width`` floats; rows of unreadable images stay zero)."""
    mine = world.shard(items)
    local = np.zeros((len(mine), width), dtype=np.float32)
    for index, features in embed(mine, description=_bar_label(chain)):
        local[np.searchsorted(mine, index)] = _apply(chain, features)
    return mine, local


def _embed_into(
    world: World,
    embed: Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]],
    items: np.ndarray,
    position: Callable[[np.ndarray], np.ndarray],
    into: np.ndarray | None,
    chain: list[Preprocessor],
    width: int,
) -> None:
    """Embed this process's share of ``items`` (sorted dataset indices) through ``chain`` and
    put the row of image ``i`` (``width`` floats) at ``into[position(i)]`` on the main
    process."""
    if not world.distributed:  # straight into place: no second copy of the rows
        assert into is not None
        for index, features in embed(items, description=_bar_label(chain)):
            into[position(index)] = _apply(chain, features)
        return
    mine, local = _embed_shard(world, embed, items, chain, width)
    world.gather_rows(position(mine), local, into)


def _bar_label(chain: list[Preprocessor]) -> str:
    return "embedding images" if chain else "embedding the preprocessing's fit sample"


def _transform_chain(chain: list[Preprocessor], x: np.ndarray) -> np.ndarray:
    for step in chain:
        x = _transform_in_blocks(step, x)
    return x


def fitted_state(step: Preprocessor) -> dict[str, Any]:
    """What a fitted step learnt: its attributes but ``params`` (which every process has)."""
    return {k: v for k, v in step.__getstate__().items() if k != "params"}  # type: ignore[attr-defined]


def load_fitted_state(step: Preprocessor, state: dict[str, Any]) -> None:
    """Make ``step`` the fitted step that :func:`fitted_state` described."""
    restore = getattr(step, "__setstate__", None)
    if restore is not None:
        restore({**state, "params": step.params})
    else:
        step.__dict__.update(state)


def fit_chain(
    chain: list[Preprocessor],
    fitted: np.ndarray,
    sample: np.ndarray,
    policy: BadImagePolicy,
    sample_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit every step on the sample's rows (passed through the steps before it); returns
    the transformed rows and the images they belong to."""
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
    return fitted, sample


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
