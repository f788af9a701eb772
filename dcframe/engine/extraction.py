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
from typing import Any, Required, TypedDict, Unpack

import numpy as np
import torch

from dcframe.core.distributed import World
from dcframe.core.interfaces import Backbone, Preprocessor
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


@dataclass(frozen=True)
class FeatureShard:
    """One process's rows of the preprocessed features (for a clusterer that clusters the
    rows where they are): ``rows[j]`` is the feature of image ``index[j]``."""

    index: np.ndarray
    rows: np.ndarray


class ExtractionOptions(TypedDict, total=False):
    """The keyword arguments of :func:`extract_features` and :func:`extract_feature_shards`.

    Attributes:
        sample_rng: Draws the sample the preprocessing is fitted on (required).
        batch_size: Images per forward pass (required).
        device: The network's device (required).
        autocast: The network's autocast context (required).
        reporter: Progress bars (required).
        bad_images: Unreadable images go here (default: fail at the first).
        world: The processes of a run (default: this one alone).
        view_cache: Cached clustering views, read and filled.
        sink: Gets the raw features of the images this process embeds.
        notes: On the main process, what :func:`collapse_notes` found in the raw features.
    """

    sample_rng: Required[np.random.Generator]
    batch_size: Required[int]
    device: Required[torch.device]
    autocast: Required[Callable[[], AbstractContextManager[Any]]]
    reporter: Required[Reporter]
    bad_images: BadImagePolicy | None
    world: World | None
    view_cache: ClusteringViewCache | None
    sink: Sink | None
    notes: list[str] | None


def extract_features(
    backbone: Backbone,
    loader: RunLoader,
    chain: list[Preprocessor],
    **options: Unpack[ExtractionOptions],
) -> np.ndarray | None:
    """The preprocessed clustering features of every image, row ``i`` = image ``i``.

    Each preprocessing step is (re)fitted from scratch on a random sample of rows already
    passed through the steps before it. Images left out by ``bad_images`` (already, or
    found unreadable now) are not extracted; their rows hold zeros.

    In a distributed run (``world``) every process embeds its share of the sample and of
    the other images; the main process fits the chain, sends the fitted steps to every
    process, and receives every row: it returns the matrix, the other processes None.
    """
    return _Extraction(backbone, loader, chain, options).gathered()


def extract_feature_shards(
    backbone: Backbone,
    loader: RunLoader,
    chain: list[Preprocessor],
    **options: Unpack[ExtractionOptions],
) -> FeatureShard:
    """As :func:`extract_features`, but every process keeps the rows it embedded (readable
    images only): no process ever holds the N x d matrix."""
    return _Extraction(backbone, loader, chain, options).sharded()


class _Extraction:
    """One extraction pass: the sample the chain is fitted on first, then the other images."""

    def __init__(
        self,
        backbone: Backbone,
        loader: RunLoader,
        chain: list[Preprocessor],
        options: ExtractionOptions,
    ) -> None:
        self.chain = chain
        self.world = options.get("world") or World()
        self.policy = options.get("bad_images") or BadImagePolicy()
        self.notes = options.get("notes")
        self.rng = options["sample_rng"]
        self.num_images, self.width = len(loader.dataset), backbone.feature_dim
        self.embed = functools.partial(
            embed_batches,
            backbone,
            loader,
            batch_size=options["batch_size"],
            device=options["device"],
            autocast=options["autocast"],
            reporter=options["reporter"],
            bad_images=self.policy,
            view_cache=options.get("view_cache"),
            sink=options.get("sink"),
        )
        order = self.policy.readable(self.rng.permutation(self.num_images))
        fit_rows = max((step.fit_sample_size(len(order)) for step in chain), default=0)
        self.sample, self.rest = np.sort(order[:fit_rows]), np.sort(order[fit_rows:])

    def gathered(self) -> np.ndarray | None:
        """Every row on the main process (None elsewhere), the sample's rows fitted first."""
        world, sample = self.world, self.sample
        fitted = self._sample_matrix()
        self._embed_into(sample, lambda index: np.searchsorted(sample, index), fitted, [])
        self._share_skipped()
        rows, rows_of = self._fit(fitted)
        out_dim = _output_dim(self.chain, self.width)
        out = None
        if world.is_main:
            out = np.zeros((self.num_images, out_dim), dtype=np.float32)  # unreadable: zero
            out[rows_of] = rows
        del rows
        self._embed_into(self.rest, lambda index: index, out, self.chain)
        self._share_skipped()
        if out is not None and self.notes is not None and not self.chain:  # rows are raw
            self.notes.extend(collapse_notes(out[self.policy.readable(np.arange(len(out)))]))
        return out

    def sharded(self) -> FeatureShard:
        """This process's rows (readable images only), the sample's raw rows kept here until
        the chain is fitted on the main process."""
        world, sample = self.world, self.sample
        fitted = self._sample_matrix()
        raw_index, raw = self._embed_share(sample, [], self.width)
        world.gather_rows(np.searchsorted(sample, raw_index), raw, fitted)
        self._share_skipped()
        self._fit(fitted)
        out_dim = _output_dim(self.chain, self.width)
        rest_index, rest_rows = self._embed_share(self.rest, self.chain, out_dim)
        self._share_skipped()
        index = np.concatenate([raw_index, rest_index])
        rows = np.concatenate([_transform_chain(self.chain, raw), rest_rows])
        order = np.argsort(index, kind="stable")
        keep = order[~np.isin(index[order], list(self.policy.skipped))]
        return FeatureShard(index[keep], rows[keep])

    def _sample_matrix(self) -> np.ndarray | None:
        """Where the main process receives the sample's raw rows (None elsewhere)."""
        if not self.world.is_main:
            return None
        return np.empty((len(self.sample), self.width), dtype=np.float32)

    def _fit(self, fitted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Fit the chain on the main process and send it to the others; on the main process
        the sample's rows through the chain and the images they belong to."""
        kept: dict[str, np.ndarray] = {}

        def fit_on_main() -> list[dict[str, Any]]:
            assert fitted is not None
            if self.notes is not None:
                self.notes.extend(collapse_notes(fitted))
            kept["rows"], kept["of"] = fit_chain(
                self.chain, fitted, self.sample, self.policy, self.rng
            )
            return [fitted_state(step) for step in self.chain]

        states = self.world.run_on_main(fit_on_main)  # fitted once, the same everywhere
        if not self.world.is_main:
            for step, state in zip(self.chain, states, strict=True):
                load_fitted_state(step, state)
            return np.empty(0), np.empty(0, dtype=np.int64)
        return kept["rows"], kept["of"]

    def _share_skipped(self) -> None:
        """Every process learns the images any process found unreadable."""
        self.policy.skipped.update(self.world.union(self.policy.skipped))

    def _fill(
        self,
        into: np.ndarray,
        position: Callable[[np.ndarray], np.ndarray],
        items: np.ndarray,
        chain: list[Preprocessor],
    ) -> None:
        """Embed ``items`` (sorted dataset indices) on this process and put the row of image
        ``i``, through ``chain``, at ``into[position(i)]``."""
        label = "embedding images" if chain else "embedding the preprocessing's fit sample"
        for index, features in self.embed(items, description=label):
            into[position(index)] = _transform_chain(chain, features)

    def _embed_share(
        self, items: np.ndarray, chain: list[Preprocessor], width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """This process's share of ``items`` and their rows through ``chain`` (``width``
        floats; rows of unreadable images stay zero)."""
        mine = self.world.shard(items)
        local = np.zeros((len(mine), width), dtype=np.float32)
        self._fill(local, lambda index: np.searchsorted(mine, index), mine, chain)
        return mine, local

    def _embed_into(
        self,
        items: np.ndarray,
        position: Callable[[np.ndarray], np.ndarray],
        into: np.ndarray | None,
        chain: list[Preprocessor],
    ) -> None:
        """Every process embeds its share of ``items``; the main process gets the row of
        image ``i`` at ``into[position(i)]``."""
        if not self.world.distributed:  # straight into place: no second copy of the rows
            assert into is not None
            self._fill(into, position, items, chain)
            return
        mine, local = self._embed_share(items, chain, _output_dim(chain, self.width))
        self.world.gather_rows(position(mine), local, into)


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
