"""The DeepCluster protocol: one epoch, in the paper's order.

:func:`run_epoch` is the whole algorithm; its steps carry the numbers of the "How it
works" page: 1-3 extract the features, PCA-whiten and L2-normalise them (one streamed
pass), 4 k-means, 5 measure (together :func:`cluster_images`), 6 sample uniformly over
the clusters, 7 a new top layer, 8 train one pass, 9 checkpoint. The same code runs in one
process or in many (``torchrun``): what differs lives behind
:class:`~dcframe.core.distributed.World`, whose methods do nothing in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dcframe.core.errors import UserError, reworded
from dcframe.core.interfaces import EpochRecord
from dcframe.core.progress import Reporter
from dcframe.data.bad_images import BadImagePolicy
from dcframe.data.loading import RunLoader
from dcframe.data.transforms import PixelsOfClusteringView
from dcframe.data.view_cache import ClusteringViewCache
from dcframe.engine.checkpointing import EpochClusters, MidEpoch, Recorder
from dcframe.engine.epoch_features import Clustered, GatheredFeatures, KnnSignal, ShardedFeatures
from dcframe.engine.extraction import extract_feature_shards, extract_features
from dcframe.engine.galleries import gallery_grid
from dcframe.engine.logbook import Logbook
from dcframe.engine.metrics import cluster_size_stats, nmi
from dcframe.engine.schedule import LearningRate
from dcframe.engine.setup import Components
from dcframe.engine.top_init import HeadInputs
from dcframe.engine.training import PassHooks, PassProgress, Start, Trainer, TrainingSample

# Distinct streams derived from (seed, epoch) so that every random choice of an epoch is
# reproducible on its own, which is what makes a resumed run equal an uninterrupted one.
STREAM_CLUSTER, STREAM_SAMPLER, STREAM_PCA_SAMPLE, STREAM_AUGMENT, STREAM_KNN = 1, 2, 3, 4, 5


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random choice (``stream``) of one epoch, derived from the seed."""
    return np.random.default_rng([seed, epoch, stream])


@dataclass
class Session:
    """What every epoch of a run works with, built once by :func:`dcframe.engine.run`.

    Attributes:
        seed: ``run.seed``, root of every epoch's random streams.
        parts: The recipe's components.
        trainer: The network, its optimizers, and the processes it trains on.
        reporter: Progress and warnings.
        bad_images: The bad-image policy and the images it left out.
        loader: The run's one loader of the dataset (its workers serve every pass).
        recorder: Writes the run's results and checkpoints.
        logbook: The run's loggers.
        steps_per_epoch: Training steps of an epoch (the loggers' step axis).
        knn: The per-epoch kNN learning signal's settings (``run.knn_k``, ``run.knn_queries``).
        view_cache: The clustering views cached so far (``run.view_cache_gib``), or None.
        learning_rate: The rate of every training step (None: ``optimizer.lr`` throughout).
        head_inputs: Where the extraction keeps the clustering features for the top layer's
            init from the clusters (``optimizer.top_init = "centroids"``), else None.
        recipe: The validated recipe (for a method's own settings).
    """

    seed: int
    parts: Components
    trainer: Trainer
    reporter: Reporter
    bad_images: BadImagePolicy
    loader: RunLoader
    recorder: Recorder
    logbook: Logbook
    steps_per_epoch: int
    knn: KnnSignal
    view_cache: ClusteringViewCache | None = None
    learning_rate: LearningRate | None = None
    head_inputs: HeadInputs | None = None
    recipe: Any = None

    @property
    def head_sizes(self) -> list[int]:
        """The k of every head: ``clusterer.k``, then each ``clusterer.extra_k`` value."""
        return [self.parts.clusterer.k, *(c.k for c in self.parts.extra_clusterers)]

    def rng(self, epoch: int, stream: int) -> np.random.Generator:
        return epoch_rng(self.seed, epoch, stream)


@dataclass
class FeatureSignals:
    """What the epoch's features showed before they were clustered.

    Attributes:
        warnings: What the raw features showed (main process): a feature collapse.
        knn_accuracy: Leave-one-out kNN accuracy against the labels (None: no labels, or off).
    """

    warnings: list[str] = dataclasses.field(default_factory=list)
    knn_accuracy: float | None = None


def run_epoch(
    epoch: int, session: Session, previous: np.ndarray | None, resumed: MidEpoch | None = None
) -> EpochRecord:
    """One DeepCluster epoch, in the paper's order; returns what the loggers got.

    Images left out as unreadable (``data.on_bad_image = "skip"``) are clustered and
    trained on by none of the steps; their assignment is -1. An epoch whose training pass
    was stopped (``resumed``) has its clusters already and continues where it stopped.
    """
    # 1-5. images -> clusters; a stopped pass saved its epoch's clusters with it
    clusters = cluster_images(epoch, session, previous) if resumed is None else resumed.clusters
    with stage(clusters.seconds, epoch, "train"):
        assignments = clusters.assignments
        sample = sample_images(epoch, session, assignments)  # 6. uniformly over clusters
        top, progress = new_top_layers(session, assignments, resumed)  # 7. new top layer
        hooks = pass_hooks(epoch, session, _saver(epoch, session, clusters, top))
        clusters.metrics["train_loss"] = session.trainer.train_pass(  # 8. train one pass
            session.loader,
            sample,
            top,
            progress,
            hooks,
            reporter=session.reporter,
            bad_images=session.bad_images,
        )
    metrics = with_totals(clusters, len(sample.indices), session.bad_images)
    assignment = clusters.assignments[0]  # k's clustering: the epoch's record
    record = EpochRecord(metrics, assignment, epoch_gallery(epoch, session, assignment))
    session.recorder.epoch_finished(epoch, record, session.bad_images.skipped)  # 9. checkpoint
    return record


def cluster_images(epoch: int, session: Session, previous: np.ndarray | None) -> EpochClusters:
    """Steps 1-5 of an epoch: features, preprocessing, k-means, measures.

    The assignments have one row per head (-1 for images left out as unreadable). Row 0 is
    the clustering with ``clusterer.k``, the epoch's record, whose distances to their
    centroids go to the run directory; each ``clusterer.extra_k`` value adds a row, the
    same features clustered again with a seed of its own.
    """
    seconds: dict[str, float] = {}
    signals = FeatureSignals()
    with stage(seconds, epoch, "extract"):  # 1. extract, 2. PCA-whiten, 3. L2-normalise
        features = _extract(epoch, session, signals.warnings)
        features.check()
        session.trainer.stop_if_asked("after the extraction pass")
    with stage(seconds, epoch, "knn"):  # part of 5, taken while the features are here
        labels = session.parts.dataset.labels
        if labels is not None:
            rng = session.rng(epoch, STREAM_KNN)
            signals.knn_accuracy = features.knn_accuracy(labels, session.knn, rng)
    with stage(seconds, epoch, "cluster"):  # 4. k-means, with a fresh seed every epoch
        heads = _cluster(epoch, session, features)
        del features
        session.recorder.clustered(epoch, heads, session.parts)  # for `dcframe assign`
        session.trainer.stop_if_asked("after the clustering")
    metrics = measure(epoch, session, heads, previous, signals)  # 5. measure
    assignments = np.stack([head.assignment for head in heads])
    return EpochClusters(assignments, metrics, seconds)


def _extract(
    epoch: int, session: Session, warnings: list[str]
) -> GatheredFeatures | ShardedFeatures:
    """Steps 1-3: this epoch's features, gathered on the main process, or left where they
    were embedded for a clusterer that clusters distributed; ``warnings`` gets what the
    raw ones showed."""
    parts, trainer, world = session.parts, session.trainer, session.trainer.world
    if session.head_inputs is not None:
        session.head_inputs.clear()
    options: dict[str, Any] = {
        "sample_rng": session.rng(epoch, STREAM_PCA_SAMPLE),
        "batch_size": trainer.optimizer.batch_size // world.size,
        "device": trainer.devices.network,
        "autocast": trainer.autocast,
        "reporter": session.reporter,
        "bad_images": session.bad_images,
        "world": world,
        "view_cache": session.view_cache,
        "sink": None if session.head_inputs is None else session.head_inputs.add,
        "notes": warnings,
    }
    chain = parts.preprocessors
    readable = session.bad_images.readable_mask
    features: GatheredFeatures | ShardedFeatures
    if parts.clusterer.distributed and world.distributed:
        shard = extract_feature_shards(parts.backbone, session.loader, chain, **options)
        features = ShardedFeatures(shard, len(parts.dataset), world, readable())
    else:
        matrix = extract_features(parts.backbone, session.loader, chain, **options)
        features = GatheredFeatures(matrix, readable(), world)
    if session.view_cache is not None:
        session.view_cache.save()
    return features


def _cluster(
    epoch: int, session: Session, features: GatheredFeatures | ShardedFeatures
) -> list[Clustered]:
    """Step 4: the features clustered once per head, each with a seed of its own."""
    parts, device = session.parts, session.trainer.devices.clusterer
    clusterers = [parts.clusterer, *parts.extra_clusterers]
    seeds = session.rng(epoch, STREAM_CLUSTER).integers(2**31 - 1, size=len(clusterers))
    return [
        features.cluster(clusterer, int(seed), device, session.reporter)
        for clusterer, seed in zip(clusterers, seeds, strict=True)
    ]


def measure(
    epoch: int,
    session: Session,
    heads: list[Clustered],
    previous: np.ndarray | None,
    signals: FeatureSignals,
) -> dict[str, Any]:
    """Step 5: the epoch's measures of its clusters, and warnings for clusters nobody learns
    from. ``previous`` is the last epoch's assignment (None in the first epoch)."""
    parts, bad_images = session.parts, session.bad_images
    k, labels = parts.clusterer.k, parts.dataset.labels
    readable = bad_images.readable_mask()
    clustered = within(heads[0].assignment, readable)
    sizes = cluster_size_stats(clustered, k)
    if sizes.empty == k - 1:
        signals.warnings.append("cluster collapse: every image is in one cluster")
    before = None if previous is None else within(previous, readable)
    truth = None if labels is None else within(labels, readable)
    metrics: dict[str, Any] = {
        "epoch": epoch,
        "kmeans_objective": heads[0].objective,
        "nmi_vs_previous": None
        if before is None
        else nmi(before[before >= 0], clustered[before >= 0]),
        "nmi_vs_labels": None if truth is None else nmi(truth, clustered),
        "knn_accuracy": signals.knn_accuracy,
        "knn_k": session.knn.k if signals.knn_accuracy is not None else None,
        "empty_clusters": sizes.empty,
        "cluster_size_min": sizes.min,
        "cluster_size_median": sizes.median,
        "cluster_size_max": sizes.max,
        "skipped_images": len(bad_images.skipped),
        "warnings": signals.warnings,
    }
    if len(heads) > 1:  # clusterer.extra_k: the same measures of each further clustering
        extra = [within(head.assignment, readable) for head in heads[1:]]
        metrics["extra_k"] = session.head_sizes[1:]
        metrics["extra_kmeans_objective"] = [head.objective for head in heads[1:]]
        metrics["extra_nmi_vs_labels"] = [None if truth is None else nmi(truth, a) for a in extra]
        metrics["extra_empty_clusters"] = [
            cluster_size_stats(a, n).empty
            for a, n in zip(extra, session.head_sizes[1:], strict=True)
        ]
    for warning in signals.warnings:
        session.reporter.warn(
            f"epoch {epoch}: {warning}; the network is not learning from these clusters"
        )
    return metrics


def sample_images(epoch: int, session: Session, assignments: np.ndarray) -> TrainingSample:
    """Step 6: the images of the training pass, drawn uniformly over the non-empty clusters
    of k's clustering, each with its pseudo-labels and the seed of its crop."""
    readable = session.bad_images.readable_mask()
    drawn = session.parts.sampler.sample(
        within(assignments[0], readable), session.rng(epoch, STREAM_SAMPLER)
    )
    indices = drawn if readable is None else np.flatnonzero(readable)[drawn]
    crops = session.rng(epoch, STREAM_AUGMENT).integers(2**63 - 1, size=len(indices))
    return TrainingSample(indices, assignments, crops)


def _saver(
    epoch: int, session: Session, clusters: EpochClusters, top: torch.optim.SGD
) -> Callable[[PassProgress], None]:
    """The mid-epoch checkpoint of this epoch's pass: its clusters and top layers."""
    skipped = session.bad_images.skipped

    def save(progress: PassProgress) -> None:
        session.recorder.epoch_interrupted(epoch, clusters, progress, top, skipped)

    return save


def new_top_layers(
    session: Session, assignments: np.ndarray, resumed: MidEpoch | None
) -> tuple[torch.optim.SGD, PassProgress]:
    """Step 7: a new top layer for every head and their momentum-free SGD, and where the
    pass starts. The paper's init, or from the clusters (``optimizer.top_init``); a
    resumed pass gets back the layers, optimizer and random state it stopped with."""
    ks = session.head_sizes
    starts = _top_layer_starts(session, assignments, ks) if resumed is None else [None] * len(ks)
    extra = list(zip(ks[1:], starts[1:], strict=True))
    top = session.trainer.new_top_layer(ks[0], starts[0], extra)
    if resumed is None:
        return top, PassProgress()
    resumed.continue_pass(session.trainer, top)
    return top, resumed.progress


def _top_layer_starts(session: Session, assignments: np.ndarray, ks: list[int]) -> list[Start]:
    """Each new top layer's (weight, bias) from its clusters, or None for the paper's init."""
    inputs = session.head_inputs
    if inputs is None:
        return [None] * len(ks)
    backbone, world = session.parts.backbone, session.trainer.world
    starts: list[Start] = [
        inputs.top_layer(a, k, backbone.feature_dim, backbone.head_activation, world)
        for a, k in zip(assignments, ks, strict=True)
    ]
    inputs.clear()  # its memory is not needed again before the next extraction
    return starts


def pass_hooks(epoch: int, session: Session, save: Callable[[PassProgress], None]) -> PassHooks:
    """What the training pass calls back: ``save``, a mid-epoch checkpoint; the loggers'
    step values; and the learning rate of each step (``optimizer.schedule``)."""
    first_step = epoch * session.steps_per_epoch

    def log(step: int, values: dict[str, float]) -> None:
        session.logbook.step(epoch, step, first_step + step, values)

    schedule = session.learning_rate
    if schedule is None or schedule.is_constant:
        return PassHooks(save, log)
    at = schedule.at

    def rate(step: int) -> float:
        return at(first_step + step)

    return PassHooks(save, log, rate)


def with_totals(
    clusters: EpochClusters, samples: int, bad_images: BadImagePolicy
) -> dict[str, Any]:
    """The epoch's metrics, completed once its training pass is done."""
    metrics, seconds = clusters.metrics, clusters.seconds
    metrics["train_samples"] = samples
    metrics["skipped_images"] = len(bad_images.skipped)
    seconds["total"] = round(sum(v for key, v in seconds.items() if key != "total"), 3)
    metrics["seconds"] = seconds
    return metrics


def epoch_gallery(epoch: int, session: Session, assignment: np.ndarray) -> Callable[[], np.ndarray]:
    """Draws the epoch's gallery of its largest clusters when a logger asks for it."""

    def draw() -> np.ndarray:
        path = session.recorder.rundir.distances_path(epoch)
        distances = np.load(path) if path.is_file() else None
        view = PixelsOfClusteringView(session.parts.backbone.input_size)

        def pixels_of(index: int) -> torch.Tensor:
            return view(session.parts.dataset.image(index))

        return gallery_grid(pixels_of, assignment, distances, seed=epoch)

    return draw


@contextlib.contextmanager
def stage(seconds: dict[str, float], epoch: int, name: str) -> Iterator[None]:
    """Time one stage of an epoch; its errors say which epoch and stage they come from."""
    start = time.perf_counter()
    try:
        yield
    except UserError as error:
        raise reworded(error, f"epoch {epoch}, {name}: {error}") from error
    seconds[name] = round(time.perf_counter() - start, 3)


def within(values: np.ndarray, readable: np.ndarray | None) -> np.ndarray:
    return values if readable is None else values[readable]
