"""The DeepCluster protocol: one clustering pass and one training pass per epoch.

:func:`run_epoch` is the whole algorithm in paper order; everything else in this module
prepares its inputs (components, checks, optimizers) or stores its outputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dcframe import registries
from dcframe.bad_images import BadImagePolicy, Unreadable
from dcframe.errors import BadImageError, UserError
from dcframe.extraction import ImageSubset, extract_features, run_loader
from dcframe.interfaces import Backbone, Clusterer, Dataset, Preprocessor, Sampler
from dcframe.metrics import cluster_size_stats, nmi
from dcframe.params import Params
from dcframe.progress import Reporter
from dcframe.recipe import dumps
from dcframe.registry import Origin
from dcframe.rundir import RunDirectory, versions
from dcframe.transforms import clustering_transform, training_transform

# Distinct streams derived from (seed, epoch) so that every random choice of an epoch is
# reproducible on its own, which is what makes a resumed run equal an uninterrupted one.
_STREAM_CLUSTER, _STREAM_SAMPLER, _STREAM_PCA_SAMPLE = 1, 2, 3


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random choice (``stream``) of one epoch, derived from the seed."""
    return np.random.default_rng([seed, epoch, stream])


@dataclass
class Components:
    """The built components of a recipe and where each one came from."""

    dataset: Dataset
    backbone: Backbone
    preprocessors: list[Preprocessor]
    clusterer: Clusterer
    sampler: Sampler
    origins: list[Origin] = field(default_factory=list)


def build_components(recipe: Any) -> Components:
    """Instantiate every component of a validated recipe from its parameters model."""
    origins: list[Origin] = []

    def make(registry: Any, section: Params) -> Any:
        entry = registry.get(section.name)  # type: ignore[attr-defined]
        origins.append(entry.origin)
        return entry.cls(section)

    return Components(
        dataset=make(registries.datasets, recipe.data),
        backbone=make(registries.backbones, recipe.backbone),
        preprocessors=[make(registries.preprocessors, p) for p in recipe.preprocess],
        clusterer=make(registries.clusterers, recipe.clusterer),
        sampler=make(registries.samplers, recipe.sampler),
        origins=origins,
    )


# ------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Devices:
    """Where the network runs and where the clusterer runs."""

    network: torch.device
    clusterer: str
    amp_dtype: torch.dtype | None


def resolve_devices(run: Any, clusterer: Clusterer, reporter: Reporter) -> Devices:
    """Pick devices from ``run.device``; impossible requests fail before any work."""
    has_cuda = torch.cuda.is_available()
    if run.device == "cuda" and not has_cuda:
        raise UserError(
            "run.device: 'cuda' requested but PyTorch sees no CUDA device; "
            "use --set run.device=cpu (or auto)"
        )
    use_cuda = run.device == "cuda" or (run.device == "auto" and has_cuda)
    cluster_device = "cpu"
    if use_cuda:
        if "cuda" in clusterer.available_devices():
            cluster_device = "cuda"
        elif run.device == "cuda" and "cuda" in type(clusterer).devices:
            raise UserError(
                "run.device: 'cuda' requested but the clusterer cannot use the GPU here "
                "(for faiss-kmeans install faiss-gpu: pip install 'dcframe[gpu]'); "
                "or use --set run.device=auto to cluster on the CPU"
            )
        else:
            reporter.info("clustering on the CPU (the clusterer has no GPU support here)")
    if run.amp != "off" and not use_cuda:
        raise UserError("run.amp: autocast is for CUDA only; use --set run.amp=off on the CPU")
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[run.amp]
    return Devices(torch.device("cuda" if use_cuda else "cpu"), cluster_device, amp)


def check_sizes(recipe: Any, parts: Components) -> None:
    """Size checks that would otherwise fail after a full extraction pass."""
    n = len(parts.dataset)
    problems = []
    if parts.clusterer.k > n:
        problems.append(
            f"clusterer.k: {parts.clusterer.k} clusters but the dataset has only {n} images; "
            f"set clusterer.k <= {n}, e.g. --set clusterer.k={max(2, n // 10)}"
        )
    dim = parts.backbone.feature_dim
    for i, step in enumerate(parts.preprocessors):
        problems += [f"preprocess[{i}].{p}" for p in step.check_sizes(n, dim)]
        dim = step.output_dim(dim)
    if problems:
        raise UserError("the recipe does not fit the data:\n  " + "\n  ".join(problems))


def check_images(
    dataset: Dataset, input_size: int, seed: int, bad_images: BadImagePolicy, count: int = 8
) -> None:
    """Open a few images (first, last and random ones) to fail early on unreadable data."""
    n = len(dataset)
    picks = {0, n - 1, *np.random.default_rng(seed).integers(0, n, size=count).tolist()}
    transform = clustering_transform(input_size)
    for index in sorted(picks):
        try:
            transform(dataset.image(index))
        except BadImageError as error:
            with _context("checking a few images before the first epoch"):
                bad_images.check([Unreadable(index, error.path, error.reason)])


# ------------------------------------------------------------------------- training


@dataclass
class Trainer:
    """The network, its persistent body optimizer and the settings of the training pass."""

    backbone: Backbone
    body_optimizer: torch.optim.SGD
    optimizer: Any
    devices: Devices
    workers: int
    transform: Any

    @classmethod
    def create(cls, recipe: Any, backbone: Backbone, devices: Devices) -> Trainer:
        """Move the net to its device and build the body SGD, which lives for the whole run."""
        opt = recipe.optimizer
        backbone.to(devices.network)
        body = torch.optim.SGD(
            backbone.body_parameters(),
            lr=opt.lr,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
        )
        transform = training_transform(
            backbone.input_size, recipe.augment.crop_scale_min, recipe.augment.horizontal_flip
        )
        return cls(backbone, body, opt, devices, recipe.run.workers, transform)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.devices.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.devices.amp_dtype)

    def new_top_layer(self, k: int) -> torch.optim.SGD:
        """Fresh top layer (N(0, 0.01), bias 0) and its momentum-free SGD, rebuilt every epoch."""
        top = self.backbone.reset_top_layer(k)
        return torch.optim.SGD(
            top.parameters(), lr=self.optimizer.lr, weight_decay=self.optimizer.weight_decay
        )

    def train_pass(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        targets: np.ndarray,
        top: torch.optim.SGD,
        reporter: Reporter,
        bad_images: BadImagePolicy,
    ) -> float:
        """One pass over ``indices`` with cross-entropy on the pseudo-labels; mean loss.

        Raises:
            UserError: the loss became NaN or infinite (the run diverged).
        """
        self.backbone.train()
        loader = run_loader(
            ImageSubset(dataset, self.transform, indices, targets[indices]),
            batch_size=self.optimizer.batch_size,
            workers=self.workers,
            pin_memory=self.devices.network.type == "cuda",
        )
        scaler = torch.amp.GradScaler("cuda", enabled=self.devices.amp_dtype == torch.float16)
        loss_fn = nn.CrossEntropyLoss()
        total, seen = 0.0, 0
        batches = reporter.track(loader, len(loader), "training")
        for step, (images, labels, unreadable) in enumerate(batches):
            bad_images.check(unreadable)
            if images is None:
                continue
            images = images.to(self.devices.network, non_blocking=True)
            labels = labels.to(self.devices.network, non_blocking=True)
            with self.autocast():
                loss = loss_fn(self.backbone(images), labels)
            self.body_optimizer.zero_grad(set_to_none=True)
            top.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(self.body_optimizer)
            scaler.step(top)
            scaler.update()
            value = loss.item()
            if not math.isfinite(value):
                raise UserError(
                    f"training step {step}: the loss is {value}; the run diverged. Start a new "
                    f"run with a lower optimizer.lr (now {self.optimizer.lr:g}) or "
                    f"optimizer.weight_decay (now {self.optimizer.weight_decay:g}), e.g. "
                    f"--set optimizer.lr={self.optimizer.lr / 10:g} --set run.name=<new-name>"
                )
            total += value * len(labels)
            seen += len(labels)
        return total / max(seen, 1)


# --------------------------------------------------------------------------- protocol


@contextlib.contextmanager
def _context(where: str) -> Iterator[None]:
    """Prefix the message of a :class:`UserError` raised in the block with where it happened."""
    try:
        yield
    except UserError as error:
        raise UserError(f"{where}: {error}") from error


@contextlib.contextmanager
def _stage(seconds: dict[str, float], epoch: int, stage: str) -> Iterator[None]:
    """Time one stage of an epoch; its errors say which epoch and stage they come from."""
    start = time.perf_counter()
    with _context(f"epoch {epoch}, {stage}"):
        yield
    seconds[stage] = round(time.perf_counter() - start, 3)


def check_features(features: np.ndarray, readable: np.ndarray | None) -> list[str]:
    """Refuse NaN or inf features; warn when every image has the same feature.

    Raises:
        UserError: some feature is not finite (the network's weights have diverged).
    """
    rows = features if readable is None else features[readable]
    if not np.isfinite(rows).all():
        raise UserError(
            "the features hold NaN or infinite values: the network's weights have diverged. "
            "Start a new run with a lower optimizer.lr or optimizer.weight_decay "
            "(--set run.name=<new-name>)"
        )
    if len(rows) > 1 and float(np.ptp(rows, axis=0).max()) == 0.0:
        return ["feature collapse: every image has the same feature (zero variance)"]
    return []


def _within(assignment: np.ndarray, readable: np.ndarray | None) -> np.ndarray:
    return assignment if readable is None else assignment[readable]


def run_epoch(
    epoch: int,
    seed: int,
    parts: Components,
    trainer: Trainer,
    previous: np.ndarray | None,
    reporter: Reporter,
    bad_images: BadImagePolicy,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One DeepCluster epoch, in the paper's order; returns the assignment and the metrics.

    Images left out as unreadable (``data.on_bad_image = "skip"``) are clustered and
    trained on by none of the steps; their assignment is -1.
    """
    seconds: dict[str, float] = {}
    k = parts.clusterer.k
    with _stage(seconds, epoch, "extract"):  # 1-3: features without the top layer, PCA, L2
        features = extract_features(
            parts.backbone,
            parts.dataset,
            parts.preprocessors,
            sample_rng=epoch_rng(seed, epoch, _STREAM_PCA_SAMPLE),
            batch_size=trainer.optimizer.batch_size,
            device=trainer.devices.network,
            workers=trainer.workers,
            autocast=trainer.autocast,
            reporter=reporter,
            bad_images=bad_images,
        )
        readable = bad_images.readable_mask()
        warnings = check_features(features, readable)
    with _stage(seconds, epoch, "cluster"):  # 4: k-means with a fresh seed every epoch
        cluster_seed = int(epoch_rng(seed, epoch, _STREAM_CLUSTER).integers(2**31 - 1))
        rows = _within(features, readable)
        with reporter.stage(f"clustering {len(rows)} x {rows.shape[1]} into {k} clusters"):
            clustering = parts.clusterer.cluster(rows, cluster_seed, trainer.devices.clusterer)
        del features, rows
    assignment = np.full(len(parts.dataset), -1, dtype=np.int64)
    assignment[slice(None) if readable is None else readable] = clustering.assignments
    clustered = _within(assignment, readable)
    labels = parts.dataset.labels  # 5: measure
    sizes = cluster_size_stats(clustered, k)
    if sizes.empty == k - 1:
        warnings.append("cluster collapse: every image is in one cluster")
    before = None if previous is None else _within(previous, readable)
    metrics: dict[str, Any] = {
        "epoch": epoch,
        "kmeans_objective": float(clustering.objective),
        "nmi_vs_previous": None
        if before is None
        else nmi(before[before >= 0], clustered[before >= 0]),
        "nmi_vs_labels": None if labels is None else nmi(_within(labels, readable), clustered),
        "empty_clusters": sizes.empty,
        "cluster_size_min": sizes.min,
        "cluster_size_median": sizes.median,
        "cluster_size_max": sizes.max,
    }
    for warning in warnings:
        reporter.warn(f"epoch {epoch}: {warning}; the network is not learning from these clusters")
    with _stage(seconds, epoch, "train"):
        # 6-7: pseudo-labelled images, drawn uniformly over the non-empty clusters
        drawn = parts.sampler.sample(clustered, epoch_rng(seed, epoch, _STREAM_SAMPLER))
        indices = drawn if readable is None else np.flatnonzero(readable)[drawn]
        top_optimizer = trainer.new_top_layer(k)  # 8: new top layer, new momentum-free SGD
        metrics["train_loss"] = trainer.train_pass(  # 9: one pass of cross-entropy
            parts.dataset, indices, assignment, top_optimizer, reporter, bad_images
        )
    metrics["train_samples"] = len(indices)
    metrics["skipped_images"] = len(bad_images.skipped)
    metrics["warnings"] = warnings
    seconds["total"] = round(sum(seconds.values()), 3)
    metrics["seconds"] = seconds
    return assignment, metrics


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run(recipe: Any, *, resume: bool = False, reporter: Reporter | None = None) -> RunDirectory:
    """Run (or resume) a whole DeepCluster training described by a validated recipe.

    The run holds an exclusive lock on its directory throughout. A folder without a
    finished epoch is started afresh; one with a finished epoch needs ``resume``.

    Raises:
        UserError: anything about the recipe, the data or the machine that the user can fix;
            all of these are checked before the first feature-extraction pass. A failure
            during an epoch names the epoch and the stage; the last finished epoch's
            checkpoint is kept.
    """
    reporter = reporter or Reporter()
    run_cfg = recipe.run
    rundir = RunDirectory(Path(run_cfg.output_dir) / run_cfg.name)
    resolved = dumps(recipe)

    torch.manual_seed(run_cfg.seed)
    parts = build_components(recipe)
    check_sizes(recipe, parts)
    devices = resolve_devices(run_cfg, parts.clusterer, reporter)
    bad_images = BadImagePolicy(
        recipe.data.on_bad_image, recipe.data.max_bad_fraction, len(parts.dataset), {}, reporter
    )
    check_images(parts.dataset, parts.backbone.input_size, run_cfg.seed, bad_images)
    with rundir.open():
        state = rundir.start(resolved, resume)
        trainer = Trainer.create(recipe, parts.backbone, devices)
        previous: np.ndarray | None = None
        start_epoch = 0
        if state is not None:
            start_epoch = int(state["epoch"])
            _restore(state, parts.backbone, trainer, rundir)
            previous = rundir.load_assignment(start_epoch - 1)
            bad_images.skipped.update(rundir.load_skipped())
            rundir.truncate_metrics(start_epoch)
            reporter.info(f"resuming {rundir.path} at epoch {start_epoch}")
        else:
            if resume:
                reporter.info(f"{rundir.path} has no finished epoch: starting from epoch 0")
            rundir.write_text("recipe.toml", resolved)
            versions_json = json.dumps(versions(parts.origins), indent=2) + "\n"
            rundir.write_text("versions.json", versions_json)
            rundir.truncate_metrics(0)
        reporter.info(
            f"run {rundir.path}: {len(parts.dataset)} images, k={parts.clusterer.k}, "
            f"device {devices.network} (clustering on {devices.clusterer})"
        )
        for epoch in range(start_epoch, run_cfg.epochs):
            try:
                previous, metrics = run_epoch(
                    epoch, run_cfg.seed, parts, trainer, previous, reporter, bad_images
                )
            except UserError as error:
                if bad_images.skipped:
                    rundir.save_skipped(bad_images.skipped)
                kept = f"; checkpoint.pt keeps epoch {epoch - 1}" if epoch > 0 else ""
                raise UserError(f"{error}{kept}") from error
            if bad_images.skipped:
                rundir.save_skipped(bad_images.skipped)
            rundir.save_assignment(epoch, previous)
            rundir.append_metrics(metrics)
            keep = run_cfg.checkpoint_every and (epoch + 1) % run_cfg.checkpoint_every == 0
            rundir.save_checkpoint(  # 10: checkpoint, atomically
                {
                    "epoch": epoch + 1,
                    "backbone": recipe.backbone.name,
                    "k": parts.clusterer.k,
                    "model": parts.backbone.state_dict(),
                    "body_optimizer": trainer.body_optimizer.state_dict(),
                    "rng": _rng_state(),
                },
                keep_epoch=epoch if keep else None,
            )
            reporter.epoch(metrics)
    return rundir


def _restore(
    state: dict[str, Any], backbone: Backbone, trainer: Trainer, rundir: RunDirectory
) -> None:
    """Load a checkpoint's model, body optimizer and RNG state into the run."""
    try:
        backbone.reset_top_layer(int(state["k"]))  # so that the saved top layer fits
        backbone.load_state_dict(state["model"])
        trainer.body_optimizer.load_state_dict(state["body_optimizer"])
        _set_rng_state(state["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"--resume: {rundir.checkpoint_path} does not fit this recipe's model "
            f"({str(error).splitlines()[0][:300]}); restore the run's own checkpoint, or start "
            "a new run with --set run.name=<new-name>"
        ) from error
