"""Assembling a run from its recipe: the components, the devices, and the checks that must
pass before the first feature-extraction pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dcframe.core import kinds
from dcframe.core.errors import BadImageError, UserError
from dcframe.core.interfaces import (
    Backbone,
    Clusterer,
    Dataset,
    Logger,
    Method,
    Preprocessor,
    Sampler,
)
from dcframe.core.machine import cpu_has_bf16
from dcframe.core.params import Params
from dcframe.core.progress import Reporter
from dcframe.core.registry import Origin
from dcframe.data.bad_images import BadImagePolicy, Unreadable
from dcframe.data.multi_crop import smallest_side_for, training_view
from dcframe.data.transforms import clustering_transform
from dcframe.engine.devices import Devices, amp_dtype


@dataclass
class Components:
    """The built components of a recipe and where each one came from."""

    method: Method
    dataset: Dataset
    backbone: Backbone
    preprocessors: list[Preprocessor]
    clusterer: Clusterer
    sampler: Sampler
    loggers: list[Logger] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    # One clusterer per ``clusterer.extra_k`` value: the same component with that k.
    extra_clusterers: list[Clusterer] = field(default_factory=list)


def build_components(recipe: Any) -> Components:
    """Instantiate every component of a validated recipe from its parameters model."""
    origins: list[Origin] = []

    def make(registry: Any, section: Params) -> Any:
        entry = registry.get(section.name)  # type: ignore[attr-defined]
        origins.append(entry.origin)
        return entry.cls(section)

    parts = Components(
        method=make(kinds.methods, recipe.method),
        dataset=make(kinds.datasets, recipe.data),
        backbone=make(kinds.backbones, recipe.backbone),
        preprocessors=[make(kinds.preprocessors, p) for p in recipe.preprocess],
        clusterer=make(kinds.clusterers, recipe.clusterer),
        sampler=make(kinds.samplers, recipe.sampler),
        loggers=[make(kinds.loggers, logger) for logger in recipe.loggers],
        origins=origins,
    )
    parts.extra_clusterers = [with_k(parts.clusterer, k) for k in recipe.clusterer.extra_k]
    view = training_view(parts.backbone.input_size, recipe.augment)
    parts.dataset.decode_at_least(smallest_side_for(view))
    return parts


def with_k(clusterer: Clusterer, k: int) -> Clusterer:
    """The same clusterer, parameters validated again, with ``k`` clusters."""
    params = clusterer.params
    return type(clusterer)(type(params).model_validate({**params.model_dump(), "k": k}))


# ------------------------------------------------------------------------- checks


def resolve_devices(run: Any, clusterer: Clusterer, reporter: Reporter) -> Devices:
    """Pick devices from ``run.device``; impossible requests fail before any work.

    The network device is plain "cuda" here; a distributed run then binds each process to
    its own GPU (:meth:`dcframe.core.distributed.World.from_environment`).
    """
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
                "run.device: 'cuda' requested but the clusterer cannot use the GPU here: "
                "--set clusterer.name=torch-kmeans clusters on any GPU torch runs on "
                "(faiss-kmeans needs a faiss GPU build matching torch's CUDA, see docs/gpu.md; "
                "`dcframe doctor` tells what is installed), or --set run.device=auto to "
                "cluster on the CPU"
            )
        else:
            reporter.info("clustering on the CPU (the clusterer has no GPU support here)")
    if run.amp == "fp16" and not use_cuda:
        raise UserError(
            "run.amp: fp16 autocast is for CUDA only; on the CPU use --set run.amp=bf16 (or off)"
        )
    if run.amp == "bf16" and not use_cuda and not cpu_has_bf16():
        reporter.warn(
            "run.amp: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 "
            "autocast is emulated and likely slower than float32; --set run.amp=off"
        )
    amp = amp_dtype(run.amp, use_cuda)
    if use_cuda:
        # Fixed input sizes: let cuDNN time its convolution algorithms once and keep the best.
        torch.backends.cudnn.benchmark = True
    return Devices(torch.device("cuda" if use_cuda else "cpu"), cluster_device, amp)


def check_sizes(recipe: Any, parts: Components, processes: int) -> None:
    """Size checks that would otherwise fail after a full extraction pass."""
    n = len(parts.dataset)
    problems = []
    batch = recipe.optimizer.batch_size
    if batch % processes:
        low = batch // processes * processes or processes
        problems.append(
            f"optimizer.batch_size: {batch} images per step (the global batch) do not split "
            f"evenly over {processes} processes; use a multiple of {processes}, e.g. "
            f"--set optimizer.batch_size={low}"
        )
    if parts.clusterer.k > n:
        problems.append(
            f"clusterer.k: {parts.clusterer.k} clusters but the dataset has only {n} images; "
            f"set clusterer.k <= {n}, e.g. --set clusterer.k={max(2, n // 10)}"
        )
    too_many = [c.k for c in parts.extra_clusterers if c.k > n]
    if too_many:
        kept = [c.k for c in parts.extra_clusterers if c.k <= n]
        problems.append(
            f"clusterer.extra_k: {too_many} clusters but the dataset has only {n} images; "
            f"keep values <= {n}, e.g. --set 'clusterer.extra_k={kept}'"
        )
    problems += parts.method.check_recipe(recipe)
    if recipe.augment.small_crops and not parts.backbone.any_input_size:
        problems.append(
            f"augment.small_crops: backbone '{recipe.backbone.name}' embeds images of "
            f"{parts.backbone.input_size} px only (its classifier is fully connected), not "
            "multi-crop's small views; use a backbone with global pooling, e.g. "
            "--set backbone.name=resnet18, or --set augment.small_crops=0"
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
            try:
                bad_images.check([Unreadable(index, error.path, error.reason)])
            except UserError as refused:
                where = "checking a few images before the first epoch"
                raise UserError(f"{where}: {refused}") from refused
