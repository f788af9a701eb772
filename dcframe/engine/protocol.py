"""The DeepCluster protocol: one clustering pass and one training pass per epoch.

:func:`run_epoch` is the whole algorithm in paper order (:func:`cluster_images` is its first
half); :func:`run` assembles the run, resumes it, and records every epoch. The same code
runs in one process or in many (``torchrun``): what differs lives behind
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
from dcframe.core.progress import Reporter
from dcframe.data.bad_images import BadImagePolicy
from dcframe.data.loading import RunLoader
from dcframe.data.view_cache import ClusteringViewCache
from dcframe.engine.checkpointing import MidEpoch, Recorder
from dcframe.engine.epoch_features import GatheredFeatures, KnnSignal, ShardedFeatures
from dcframe.engine.extraction import extract_feature_shards, extract_features
from dcframe.engine.logbook import Logbook
from dcframe.engine.metrics import cluster_size_stats, nmi
from dcframe.engine.schedule import LearningRate
from dcframe.engine.setup import (
    Components,
)
from dcframe.engine.top_init import HeadInputs
from dcframe.engine.training import PassProgress, Start, Trainer

# Distinct streams derived from (seed, epoch) so that every random choice of an epoch is
# reproducible on its own, which is what makes a resumed run equal an uninterrupted one.
_STREAM_CLUSTER, _STREAM_SAMPLER, _STREAM_PCA_SAMPLE, _STREAM_AUGMENT, _STREAM_KNN = 1, 2, 3, 4, 5


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random choice (``stream``) of one epoch, derived from the seed."""
    return np.random.default_rng([seed, epoch, stream])


@contextlib.contextmanager
def _stage(seconds: dict[str, float], epoch: int, stage: str) -> Iterator[None]:
    """Time one stage of an epoch; its errors say which epoch and stage they come from."""
    start = time.perf_counter()
    try:
        yield
    except UserError as error:
        raise reworded(error, f"epoch {epoch}, {stage}: {error}") from error
    seconds[stage] = round(time.perf_counter() - start, 3)


def _within(values: np.ndarray, readable: np.ndarray | None) -> np.ndarray:
    return values if readable is None else values[readable]


@dataclass
class RunContext:
    """What every epoch of a run works with, built once by :func:`run`.

    Attributes:
        seed: ``run.seed``, root of every epoch's random streams.
        parts: The recipe's components.
        trainer: The network, its optimizers, and the processes it trains on.
        reporter: Progress and warnings.
        bad_images: The bad-image policy and the images it left out.
        loader: The run's one loader of the dataset (its workers serve every pass).
        recorder: Writes mid-epoch checkpoints (None outside a run directory).
        view_cache: The clustering views cached so far (``run.view_cache_gib``), or None.
        knn: The per-epoch kNN learning signal's settings (``run.knn_k``, ``run.knn_queries``).
        logbook: The run's loggers (None: nothing logged, e.g. outside a run).
        steps_per_epoch: Training steps of an epoch (the loggers' step axis).
        learning_rate: The rate of every training step (None: ``optimizer.lr`` throughout).
        head_inputs: Where the extraction keeps the clustering features for the top layer's
            init from the clusters (``optimizer.top_init = "centroids"``), else None.
    """

    seed: int
    parts: Components
    trainer: Trainer
    reporter: Reporter
    bad_images: BadImagePolicy
    loader: RunLoader
    recorder: Recorder | None = None
    view_cache: ClusteringViewCache | None = None
    knn: KnnSignal = dataclasses.field(default_factory=lambda: KnnSignal(0, 0, "cpu"))
    logbook: Logbook | None = None
    steps_per_epoch: int = 0
    learning_rate: LearningRate | None = None
    head_inputs: HeadInputs | None = None


def cluster_images(
    epoch: int, run: RunContext, previous: np.ndarray | None, seconds: dict[str, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Steps 1-5 of an epoch: features, preprocessing, k-means, measures.

    Returns the assignments, one row per head (-1 for images left out as unreadable), and
    the epoch's metrics. Row 0 is the clustering with ``clusterer.k``, the epoch's record,
    whose distances to their centroids go to the run directory; each ``clusterer.extra_k``
    value adds a row, the same features clustered again with a seed of its own.
    """
    parts, trainer, reporter, bad_images = run.parts, run.trainer, run.reporter, run.bad_images
    k = parts.clusterer.k
    labels = parts.dataset.labels
    with _stage(seconds, epoch, "extract"):  # 1-3: features without the top layer, PCA, L2
        warnings: list[str] = []  # what the raw features showed (main process)
        features = _extract(epoch, run, warnings)
        readable = bad_images.readable_mask()
        features.check()
        trainer.stop_if_asked("after the extraction pass")
    with _stage(seconds, epoch, "knn"):  # a learning signal from the features already there
        knn = None
        if labels is not None:
            knn = features.knn_accuracy(labels, run.knn, epoch_rng(run.seed, epoch, _STREAM_KNN))
    with _stage(seconds, epoch, "cluster"):  # 4: k-means with a fresh seed every epoch
        clusterers = [parts.clusterer, *parts.extra_clusterers]
        rng = epoch_rng(run.seed, epoch, _STREAM_CLUSTER)
        seeds: list[int] = rng.integers(2**31 - 1, size=len(clusterers)).tolist()
        result, *extra = [
            features.cluster(c, s, trainer.devices.clusterer, reporter)
            for c, s in zip(clusterers, seeds, strict=True)
        ]
        del features
        assignment = result.assignment
        if run.recorder is not None:
            run.recorder.clustered(epoch, result.distances)
        trainer.stop_if_asked("after the clustering")
    clustered = _within(assignment, readable)  # 5: measure
    sizes = cluster_size_stats(clustered, k)
    if sizes.empty == k - 1:
        warnings.append("cluster collapse: every image is in one cluster")
    before = None if previous is None else _within(previous, readable)
    metrics: dict[str, Any] = {
        "epoch": epoch,
        "kmeans_objective": result.objective,
        "nmi_vs_previous": None
        if before is None
        else nmi(before[before >= 0], clustered[before >= 0]),
        "nmi_vs_labels": None if labels is None else nmi(_within(labels, readable), clustered),
        "knn_accuracy": knn,
        "knn_k": run.knn.k if knn is not None else None,
        "empty_clusters": sizes.empty,
        "cluster_size_min": sizes.min,
        "cluster_size_median": sizes.median,
        "cluster_size_max": sizes.max,
        "skipped_images": len(bad_images.skipped),
        "warnings": warnings,
    }
    if extra:  # clusterer.extra_k: the same measures of each further clustering, as lists
        heads = [_within(e.assignment, readable) for e in extra]
        metrics["extra_k"] = [c.k for c in parts.extra_clusterers]
        metrics["extra_kmeans_objective"] = [e.objective for e in extra]
        metrics["extra_nmi_vs_labels"] = [
            None if labels is None else nmi(_within(labels, readable), h) for h in heads
        ]
        metrics["extra_empty_clusters"] = [
            cluster_size_stats(h, c.k).empty
            for h, c in zip(heads, parts.extra_clusterers, strict=True)
        ]
    for warning in warnings:
        reporter.warn(f"epoch {epoch}: {warning}; the network is not learning from these clusters")
    return np.stack([assignment, *(e.assignment for e in extra)]), metrics


def _extract(epoch: int, run: RunContext, notes: list[str]) -> GatheredFeatures | ShardedFeatures:
    """This epoch's features: gathered on the main process, or left where they were embedded
    for a clusterer that clusters distributed; ``notes`` gets what the raw ones showed."""
    trainer, parts, world = run.trainer, run.parts, run.trainer.world
    options: dict[str, Any] = {
        "sample_rng": epoch_rng(run.seed, epoch, _STREAM_PCA_SAMPLE),
        "batch_size": trainer.optimizer.batch_size // world.size,
        "device": trainer.devices.network,
        "autocast": trainer.autocast,
        "reporter": run.reporter,
        "bad_images": run.bad_images,
        "world": world,
        "view_cache": run.view_cache,
        "sink": None if run.head_inputs is None else run.head_inputs.add,
        "notes": notes,
    }
    if run.head_inputs is not None:
        run.head_inputs.clear()
    inputs = (parts.backbone, run.loader, parts.preprocessors)
    features: GatheredFeatures | ShardedFeatures
    if parts.clusterer.distributed and world.distributed:
        shard = extract_feature_shards(*inputs, **options)
        features = ShardedFeatures(shard, len(parts.dataset), world, run.bad_images.readable_mask())
    else:
        matrix = extract_features(*inputs, **options)
        features = GatheredFeatures(matrix, run.bad_images.readable_mask(), world)
    if run.view_cache is not None:
        run.view_cache.save()
    return features


def run_epoch(
    epoch: int, run: RunContext, previous: np.ndarray | None, resume: MidEpoch | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One DeepCluster epoch, in the paper's order; returns the assignment and the metrics.

    Images left out as unreadable (``data.on_bad_image = "skip"``) are clustered and
    trained on by none of the steps; their assignment is -1. An epoch stopped during its
    training pass (``resume``) has its clusters already and continues where it stopped.
    """
    parts, trainer, bad_images = run.parts, run.trainer, run.bad_images
    if resume is None:  # 1-5
        seconds: dict[str, float] = {}
        assignments, metrics = cluster_images(epoch, run, previous, seconds)
    else:
        assignments, metrics, seconds = resume.assignments, resume.metrics, resume.seconds
    assignment = assignments[0]  # k's clustering: what the sampler draws from, and the record
    readable = bad_images.readable_mask()
    with _stage(seconds, epoch, "train"):
        # 6-7: pseudo-labelled images, drawn uniformly over the non-empty clusters
        drawn = parts.sampler.sample(
            _within(assignment, readable), epoch_rng(run.seed, epoch, _STREAM_SAMPLER)
        )
        indices = drawn if readable is None else np.flatnonzero(readable)[drawn]
        crops = epoch_rng(run.seed, epoch, _STREAM_AUGMENT).integers(2**63 - 1, size=len(indices))
        ks = [parts.clusterer.k, *(c.k for c in parts.extra_clusterers)]
        starts = _top_layer_starts(run, assignments, ks, resumed=resume is not None)
        extra = list(zip(ks[1:], starts[1:], strict=True))
        top_optimizer = trainer.new_top_layer(ks[0], starts[0], extra)  # 8: new top layer(s), SGD
        progress = PassProgress()
        if resume is not None:
            resume.continue_pass(trainer, top_optimizer)
            progress = resume.progress
        save = _saver(run.recorder, epoch, assignments, metrics, seconds, top_optimizer, bad_images)
        metrics["train_loss"] = trainer.train_pass(  # 9: one pass of cross-entropy
            run.loader,
            indices,
            assignments,
            crops,
            top_optimizer,
            run.reporter,
            bad_images,
            progress,
            save,
            _step_logger(run, epoch),
            _step_rate(run, epoch),
        )
    metrics["train_samples"] = len(indices)
    metrics["skipped_images"] = len(bad_images.skipped)
    seconds["total"] = round(sum(v for key, v in seconds.items() if key != "total"), 3)
    metrics["seconds"] = seconds
    return assignment, metrics


def _top_layer_starts(
    run: RunContext, assignments: np.ndarray, ks: list[int], resumed: bool
) -> list[Start]:
    """Each new top layer's (weight, bias) from its clusters, or None for the paper's init
    (and for a resumed pass, whose layers come from the checkpoint)."""
    inputs = run.head_inputs
    if inputs is None or resumed:
        return [None] * len(ks)
    backbone = run.parts.backbone
    starts: list[Start] = [
        inputs.top_layer(a, k, backbone.feature_dim, backbone.head_activation, run.trainer.world)
        for a, k in zip(assignments, ks, strict=True)
    ]
    inputs.clear()  # its memory is not needed again before the next extraction
    return starts


def _step_rate(run: RunContext, epoch: int) -> Callable[[int], float] | None:
    """The learning rate at each step of this epoch's pass (None: constant ``lr``)."""
    rate = run.learning_rate
    if rate is None or rate.is_constant:
        return None
    return lambda step: rate.at(epoch * run.steps_per_epoch + step)


def _step_logger(run: RunContext, epoch: int) -> Callable[[int, dict[str, float]], None]:
    """What the training pass calls with its running values every few steps."""

    def log(step: int, values: dict[str, float]) -> None:
        if run.logbook is not None:
            run.logbook.step(epoch, step, epoch * run.steps_per_epoch + step, values)

    return log


def _saver(
    recorder: Recorder | None,
    epoch: int,
    assignments: np.ndarray,
    metrics: dict[str, Any],
    seconds: dict[str, float],
    top: torch.optim.SGD,
    bad_images: BadImagePolicy,
) -> Callable[[PassProgress], None]:
    """What the training pass calls to write a mid-epoch checkpoint (nothing without a run)."""

    def save(progress: PassProgress) -> None:
        if recorder is not None:
            partial = {k: v for k, v in metrics.items() if k != "train_loss"}
            recorder.epoch_interrupted(
                epoch, assignments, partial, dict(seconds), progress, top, bad_images.skipped
            )

    return save
