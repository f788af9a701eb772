"""``dcframe bench``: every stage of an epoch timed against its floor, measured in the same run.

On a slice of the recipe's own data and model, each dcframe stage is timed next to the
fastest way to do its work with the same libraries, run by hand:

* extraction (decoding or reading the view cache, the forward pass, and putting rows in
  place) against the forward pass on images already decoded into tensors in memory (and
  against decoding, then forwarding, one after the other);
* preprocessing (fitted and applied) + clustering against raw faiss (``PCAMatrix`` +
  ``Kmeans``) on the same features;
* training against a plain forward/backward/step loop on tensors in memory, both ways:
  augmented one image at a time with PIL in the loader workers, and as batches on the run's
  device (``run.augment_on``; from the decoded-image cache when the recipe caches).

Beside the table, the decode rate: images per second that one core decodes (the
dataset's own ``image()``, as the workers call it), which bounds what the loader can feed.

Pairs run interleaved, ``repeat`` times, and the medians are reported with their ratio
``floor / dcframe`` (1.0: dcframe is as fast as its floor). Ratios, not seconds, are the
figures of merit: machines are shared and noisy. Seconds per image then project a full
epoch of the recipe's dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dcframe.core.clustering import import_faiss
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Dataset
from dcframe.core.params import NoParams
from dcframe.core.progress import Reporter
from dcframe.data.bad_images import BadImagePolicy
from dcframe.data.batch_views import BatchTrainingView
from dcframe.data.batched_training import DeviceAugmentation
from dcframe.data.image_cache import DecodedImageCache
from dcframe.data.loading import CLUSTERING, TRAINING, Item, RunLoader
from dcframe.data.view_cache import GIB, ClusteringViewCache
from dcframe.engine.extraction import extract_features, fit_chain
from dcframe.engine.setup import (
    Components,
    build_components,
    check_sizes,
    resolve_devices,
    with_k,
)
from dcframe.engine.training import PassHooks, PassProgress, Trainer, TrainingSample


@dataclass(frozen=True)
class StageTiming:
    """One row of the table: a dcframe stage and its floor, median seconds."""

    stage: str
    dcframe_s: float
    floor: str
    floor_s: float

    @property
    def ratio(self) -> float:
        return self.floor_s / self.dcframe_s if self.dcframe_s > 0 else float("nan")


@dataclass(frozen=True)
class BenchReport:
    """The timings of a slice of ``images`` images and the projection of a full epoch."""

    recipe: str
    images: int
    dataset_images: int
    train_samples_per_epoch: int
    repeat: int
    rows: list[StageTiming]
    epoch_projection_s: dict[str, float]
    decode_images_per_s: float

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [asdict(r) | {"ratio": r.ratio} for r in self.rows]
        return data


class _Slice(Dataset):
    """Images ``indices`` of another dataset (a bench measures a slice, evenly spread)."""

    def __init__(self, base: Dataset, indices: np.ndarray) -> None:
        super().__init__(NoParams())
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> Any:
        return self.base.image(int(self.indices[index]))


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _median_pairs(
    repeat: int, pairs: list[tuple[Callable[[], object], Callable[[], object]]]
) -> list[tuple[float, float]]:
    """Median seconds of each (dcframe, floor) pair, the two run back to back each time."""
    times: list[list[tuple[float, float]]] = [[] for _ in pairs]
    for _ in range(repeat):
        for slot, (ours, floor) in zip(times, pairs, strict=True):
            slot.append((_timed(ours), _timed(floor)))
    return [
        (statistics.median(t[0] for t in slot), statistics.median(t[1] for t in slot))
        for slot in times
    ]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    module.eval()
    with torch.no_grad():
        yield


@contextlib.contextmanager
def _measuring(recipe: Any, images: int, reporter: Reporter) -> Iterator[_Stages]:
    """The stages of ``recipe`` on a slice of ``images`` of its images, evenly spread, with
    what they start from prepared (and the caches filled, as from the second epoch on).

    Raises:
        UserError: the recipe's method is not DeepCluster, whose passes these are.
    """
    if recipe.method.name != "deepcluster":
        raise UserError(
            f"the stages measured are DeepCluster's (extraction, k-means, one-view training); "
            f"method '{recipe.method.name}' is not measured yet: time a short run instead, "
            "e.g. --set run.epochs=1"
        )
    torch.manual_seed(recipe.run.seed)
    parts = build_components(recipe)
    full = len(parts.dataset)
    picked = np.unique(np.linspace(0, full - 1, min(images, full)).astype(np.int64))
    data = _Slice(parts.dataset, picked)
    # The k-means of clusterer.k is timed; clusterer.extra_k's are projected from it.
    sliced = dataclasses.replace(parts, dataset=data, extra_clusterers=[])
    sliced.clusterer = with_k(parts.clusterer, min(parts.clusterer.k, len(data)))
    try:
        check_sizes(recipe, sliced, 1)
    except UserError as error:
        raise UserError(f"--images {len(data)} is too few for this recipe: {error}") from error
    devices = resolve_devices(recipe.run, parts.clusterer, reporter)
    trainer = Trainer.create(recipe, parts.backbone, devices)
    with tempfile.TemporaryDirectory(prefix="dcframe-bench-") as scratch:
        clustered_k = parts.clusterer.k + sum(c.k for c in parts.extra_clusterers)
        yield _Stages(recipe, sliced, trainer, Path(scratch), (full, clustered_k))


def _projection(
    recipe: Any, stages: _Stages, extract_s: float, cluster_epoch_s: float, train_s: float
) -> dict[str, float]:
    """Seconds of a full epoch: extraction and training scale with the images they see
    (from the slice's seconds); the clustering comes projected already."""
    per_image, full = len(stages.parts.dataset), stages.full
    projection = {
        "extract": extract_s / per_image * full,
        "cluster": cluster_epoch_s,
        "train": train_s / per_image * _train_samples(recipe, full),
    }
    projection["total"] = sum(projection.values())
    return projection


def _scaled_clustering(stages: _Stages, seconds: float, rows: int, k: int) -> float:
    """An epoch's k-means of every head from one k-means of ``rows`` rows into ``k``
    clusters: its cost grows with N x k per iteration."""
    return seconds * stages.full / rows * stages.clustered_k / k


#: Rows of the k-means an estimate times (random unit rows of the clustered width).
ESTIMATE_KMEANS_ROWS = 8192


def _train_samples(recipe: Any, full: int) -> int:
    return max(1, round(getattr(recipe.sampler, "reassign", 1.0) * full))


def bench(recipe: Any, images: int, repeat: int, reporter: Reporter) -> BenchReport:
    """Time every stage of an epoch of ``recipe`` on ``images`` of its images."""
    with _measuring(recipe, images, reporter) as stages:
        reporter.info(
            f"timing {len(stages.parts.dataset)} of {stages.full} images, {repeat} times each"
        )
        timings = _median_pairs(repeat, stages.pairs())
        (ex, fw), (ex2, seq), (cl, fa), (tr_pil, tf), (tr_dev, tf2) = timings
        decode_rate = len(stages.parts.dataset) / min(_timed(stages.decode) for _ in range(repeat))
    network, per_image = stages.trainer.devices.network.type, len(stages.parts.dataset)
    cached = " (views cached)" if stages.cache is not None else ""
    on_device = " (images cached)" if stages.images is not None else ""
    in_memory = "fwd/bwd/step on tensors in memory"
    rows = [
        StageTiming(f"extraction{cached}", ex, "forward pass on tensors in memory", fw),
        StageTiming(f"extraction{cached}", ex2, "decode, then forward, one after the other", seq),
        StageTiming(f"PCA + k-means (k={stages.k})", cl, "raw faiss PCAMatrix + Kmeans", fa),
        StageTiming("training, PIL in workers", tr_pil, in_memory, tf),
        StageTiming(f"training, batched on {network}{on_device}", tr_dev, in_memory, tf2),
    ]
    # the projection follows the recipe's own path
    tr = tr_dev if recipe.run.augment_on == "device" else tr_pil
    return BenchReport(
        recipe.run.name,
        len(stages.parts.dataset),
        stages.full,
        _train_samples(recipe, stages.full),
        repeat,
        rows,
        _projection(recipe, stages, ex, _scaled_clustering(stages, cl, per_image, stages.k), tr),
        decode_rate,
    )


@dataclass(frozen=True)
class Estimate:
    """What a run of a recipe will cost on this machine, projected from one pass of each
    stage over a slice of its images (the caches full, as from the second epoch on).

    Attributes:
        images: The images measured.
        dataset_images: The recipe's images.
        epochs: ``run.epochs``.
        epoch_s: Projected seconds of one epoch: extract, cluster, train and total.
        device: Where the network ran.
    """

    images: int
    dataset_images: int
    epochs: int
    epoch_s: dict[str, float]
    device: str

    @property
    def total_s(self) -> float:
        return self.epoch_s["total"] * self.epochs

    def describe(self) -> str:
        """One line: the epoch, its stages, and the whole run."""
        parts = ", ".join(
            f"{stage} {duration(self.epoch_s[stage])}" for stage in ("extract", "cluster", "train")
        )
        return (
            f"estimated {duration(self.epoch_s['total'])} an epoch ({parts}), "
            f"{duration(self.total_s)} for {self.epochs} epochs on this machine "
            f"({self.device}; measured on {self.images} of {self.dataset_images:,} images, "
            "`dcframe bench` for details)"
        )


def duration(seconds: float) -> str:
    """``seconds`` rounded for a person: 40 s, 3.5 min, 2.1 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


#: Images an estimate measures (at least as many as the recipe's PCA needs).
ESTIMATE_IMAGES = 128


def estimate(recipe: Any, reporter: Reporter, images: int = ESTIMATE_IMAGES) -> Estimate:
    """Project the cost of ``recipe`` from one pass of each of its stages on a slice of
    ``images`` of its images (more when its preprocessing needs more to fit)."""
    needed = max([images, *(getattr(p, "dim", 0) for p in recipe.preprocess)])
    with _measuring(recipe, needed, Reporter(quiet=True)) as stages:
        extract_s = _timed(stages.extract)
        train = stages.train_batched if recipe.run.augment_on == "device" else stages.train_pil
        train_s = _timed(train)
        # k-means on the slice alone would be all fixed costs: time it at a larger scale
        rows = min(stages.full, ESTIMATE_KMEANS_ROWS)
        k = min(recipe.clusterer.k, rows)
        cluster_s = _timed(lambda: stages.cluster_random_rows(rows, k))
    return Estimate(
        len(stages.parts.dataset),
        stages.full,
        recipe.run.epochs,
        _projection(
            recipe, stages, extract_s, _scaled_clustering(stages, cluster_s, rows, k), train_s
        ),
        stages.trainer.devices.network.type,
    )


class _Stages:
    """Each timed dcframe stage beside its floor, on the sliced components (``parts``, whose
    clusterer already has the slice's k), with what the floors start from prepared once,
    outside any timing."""

    def __init__(
        self,
        recipe: Any,
        parts: Components,
        trainer: Trainer,
        scratch: Path,
        scale: tuple[int, int],
    ) -> None:
        self.seed, self.parts, self.trainer = recipe.run.seed, parts, trainer
        self.k, self.batch = parts.clusterer.k, recipe.optimizer.batch_size
        # what the slice stands for: the recipe's images, and the k of all its heads together
        self.full, self.clustered_k = scale
        backbone, device = parts.backbone, trainer.devices.network
        # The run's loader serves the floors' decoding too, so both sides have the same
        # (already started) workers.
        self.loader = trainer.loader_for(parts.dataset)
        self.decoded = _decoded(self.loader, CLUSTERING, self.batch)
        with _eval_mode(backbone):
            embedded = [backbone.embed(x.to(device)).float().cpu() for x, _ in self.decoded]
        self.raw = torch.cat(embedded).numpy()
        self.augmented = _decoded(self.loader, TRAINING, self.batch)
        self.cache = None
        self.images: DecodedImageCache | None = None
        view = BatchTrainingView(trainer.transform, device)
        self.batched = DeviceAugmentation(view, jpeg_on_device=recipe.run.jpeg_decode == "device")
        if recipe.run.view_cache_gib:  # timed as from the second epoch on: the caches are full
            n, size = len(parts.dataset), backbone.input_size
            self.cache = ClusteringViewCache(scratch, n, size)
            self.extract()
            if not self.batched.jpeg_on_device:
                budget = int(recipe.run.view_cache_gib * GIB) - self.cache.pixels.nbytes
                self.images = self.batched.cache = DecodedImageCache(scratch, n, budget)
                self.train_batched()

    def pairs(self) -> list[tuple[Callable[[], object], Callable[[], object]]]:
        """(dcframe's stage, its floor), in the table's order."""
        return [
            (self.extract, self.forward_in_memory),
            (self.extract, self.decode_then_forward),
            (self.cluster, self.raw_faiss),
            (self.train_pil, self.train_in_memory),
            (self.train_batched, self.train_in_memory),
        ]

    def extract(self) -> object:
        # The preprocessing is fitted in the next row (against raw faiss), not here.
        return extract_features(
            self.parts.backbone,
            self.loader,
            [],
            sample_rng=np.random.default_rng(self.seed),
            batch_size=self.batch,
            device=self.trainer.devices.network,
            autocast=self.trainer.autocast,
            reporter=Reporter(quiet=True),
            view_cache=self.cache,
        )

    def forward_in_memory(self) -> object:
        return self._forward(self.decoded)

    def decode_then_forward(self) -> object:
        return self._forward(_decoded(self.loader, CLUSTERING, self.batch))

    def _forward(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> object:
        backbone, device = self.parts.backbone, self.trainer.devices.network
        with _eval_mode(backbone), self.trainer.autocast():
            return [backbone.embed(x.to(device)) for x, _ in batches]

    def cluster(self) -> object:
        rng = np.random.default_rng(self.seed)
        chain, raw = self.parts.preprocessors, self.raw
        rows, _ = fit_chain(chain, raw, np.arange(len(raw)), BadImagePolicy(), rng)
        return self.parts.clusterer.cluster(rows, 1, self.trainer.devices.clusterer)

    def cluster_random_rows(self, rows: int, k: int) -> object:
        """The recipe's clusterer on ``rows`` random unit rows of the clustered width."""
        width = self.parts.backbone.feature_dim
        for step in self.parts.preprocessors:
            width = step.output_dim(width)
        x = np.random.default_rng(self.seed).standard_normal((rows, width), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return with_k(self.parts.clusterer, k).cluster(x, 1, self.trainer.devices.clusterer)

    def raw_faiss(self) -> object:
        return _raw_faiss(self.raw, self.parts, self.k)

    def train_pil(self) -> object:
        return self._train(None)

    def train_batched(self) -> object:
        return self._train(self.batched)

    def _train(self, augmentation: DeviceAugmentation | None) -> object:
        indices = np.arange(len(self.parts.dataset))
        sample = TrainingSample(indices, targets=indices % self.k, seeds=indices)
        top = self.trainer.new_top_layer(self.k)
        self.trainer.augmentation = augmentation
        return self.trainer.train_pass(self.loader, sample, top, PassProgress(), PassHooks())

    def decode(self) -> object:
        dataset = self.parts.dataset
        return [dataset.image(i) for i in range(len(dataset))]

    def train_in_memory(self) -> object:
        trainer, device = self.trainer, self.trainer.devices.network
        top = trainer.new_top_layer(self.k)
        loss_fn = nn.CrossEntropyLoss()
        trainer.backbone.train()
        for x, y in self.augmented:
            with trainer.autocast():
                loss = loss_fn(trainer.backbone(x.to(device)), (y % self.k).to(device))
            trainer.body_optimizer.zero_grad(set_to_none=True)
            top.zero_grad(set_to_none=True)
            loss.backward()
            trainer.body_optimizer.step()
            top.step()
        return loss.item()


def _decoded(loader: RunLoader, view: str, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``view`` of every image of the loader's dataset, as (images, dataset indices) batches
    of tensors in memory; the training view draws image i's crop from seed i."""
    seeded = view == TRAINING
    items = [Item(view, i, i, i if seeded else -1) for i in range(len(loader.dataset))]
    batches = loader.load([items[s : s + batch] for s in range(0, len(items), batch)])
    return [(images, index) for images, index, _ in batches]


def _raw_faiss(raw: np.ndarray, parts: Components, k: int) -> object:
    """PCA-whitening, L2 and k-means straight through faiss, at the recipe's sizes."""
    faiss = import_faiss()
    dims = [p.params.dim for p in parts.preprocessors if hasattr(p.params, "dim")]
    dim = dims[0] if dims else raw.shape[1]
    iterations = getattr(parts.clusterer.params, "iterations", 20)
    pca = faiss.PCAMatrix(raw.shape[1], dim, -0.5)
    pca.train(raw)
    rows = pca.apply(raw)
    faiss.normalize_L2(rows)
    kmeans = faiss.Kmeans(
        dim, k, niter=iterations, seed=1, max_points_per_centroid=10**7, min_points_per_centroid=1
    )
    kmeans.train(rows)
    return kmeans.index.search(rows, 1)
