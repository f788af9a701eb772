"""The linear probe: a linear classifier on each frozen layer (the paper's protocol by default).

The trunk is frozen in eval mode. Every chosen layer gets its own ``nn.Linear`` (PyTorch's
default init); all of them train together on the same batches (one trunk pass feeds them
all; their losses are summed, and as they share no parameter each trains exactly as if
alone), with SGD (lr0 0.01, momentum 0.9, weight decay 1e-4 by default) and the learning
rate ``lr0 / sqrt(1 + lr0 * weight_decay * t)`` at iteration ``t`` (:func:`decayed_lr`).

Training views (``s = input_size / 224``):

* ``augment`` (the paper's): Resize(256s) -> CenterCrop(256s) -> RandomCrop(224s) ->
  horizontal flip, one trunk pass per batch;
* ``cached``: the deterministic Resize(256s) -> CenterCrop(224s) view, extracted once into
  the on-disk :class:`~dcframe.evaluation.store.FeatureCache` (float32, N x dim per
  layer), then only the heads train on batches of rows read back from it: cheap on small
  data, no augmentation.

Validation: Resize(256s) -> CenterCrop(224s), or TenCrop(224s) (four corners and centre,
and their mirror images) with the softmax averaged over the ten crops. Validation features
are deterministic, so they are extracted once into the cache (x10 disk with ten crops) in
both modes and streamed back a batch of images at a time, each image's crops averaged as
its batch is scored. RAM thus holds a batch, the model and the heads, whatever the number
of images. After every epoch each head is scored on the validation split; the report gives
the best epoch (highest top-1, the paper's choice), the last one and ``mean_last_10``, the
mean of the last ``min(10, epochs)`` epochs.

``protocol="stable"`` (not the paper's; for small data, where the paper's probe swings by
many points from one epoch to the next) changes two things. Each head is
``Standardise -> Linear``: every feature dimension is centred and scaled by the mean and
standard deviation of the *training* features (one pass over the training batches before
the first epoch, :func:`train_statistics`; a dimension constant on the training split is
zeroed), the same fixed transform applied to validation features. And the learning rate
follows a cosine from ``lr0`` to 0 over all the iterations (:func:`cosine_lr`), so the last
epochs are steady and their scores can be quoted instead of the best of many.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

from dcframe.data.transforms import IMAGENET_MEAN, IMAGENET_STD, clustering_transform, resize_size
from dcframe.evaluation.accuracy import hits_to_accuracy, topk_hits
from dcframe.evaluation.data import EvalData, image_loader
from dcframe.evaluation.features import FrozenFeatures
from dcframe.evaluation.options import LinearProbeOptions
from dcframe.evaluation.runtime import Runtime
from dcframe.evaluation.store import FeatureCache, FeatureFile

Batches = Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]

#: Crops per image of the ten-crop view.
TEN_CROPS = 10


def decayed_lr(lr0: float, weight_decay: float, iteration: int) -> float:
    """Learning rate at iteration ``t``: ``lr0 / sqrt(1 + lr0 * weight_decay * t)``."""
    return lr0 / math.sqrt(1.0 + lr0 * weight_decay * iteration)


def cosine_lr(lr0: float, iteration: int, total: int) -> float:
    """The stable protocol's rate at iteration ``t`` of ``total``: a cosine from ``lr0`` at
    ``t = 0`` towards 0, ``lr0 * (1 + cos(pi * t / total)) / 2``."""
    return 0.5 * lr0 * (1.0 + math.cos(math.pi * min(iteration, total) / max(total, 1)))


class Standardise(nn.Module):
    """``(x - mean) * scale`` over the last dimension, with fixed (not learnt) statistics.

    ``scale`` is ``1 / std``, and 0 for a dimension that is constant on the data the
    statistics come from (it carries nothing a linear classifier could use there).
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        tolerance = 1e-6 * float(std.max()) if std.numel() else 0.0
        scale = torch.where(std > tolerance, 1.0 / std.clamp_min(1e-30), torch.zeros_like(std))
        self.register_buffer("mean", mean.float())
        self.register_buffer("scale", scale.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


def train_statistics(
    batches: Iterable[dict[str, torch.Tensor]], device: torch.device | str = "cpu"
) -> dict[str, Standardise]:
    """Per-dimension mean and (population) standard deviation of every layer's features
    over ``batches`` (the training split; accumulated in float64), as one
    :class:`Standardise` per layer."""
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for inputs in batches:
        for name, x in inputs.items():
            x = x.to(device, torch.float64)
            x = x.reshape(-1, x.shape[-1])
            if name not in sums:
                sums[name] = torch.zeros(x.shape[-1], dtype=torch.float64, device=x.device)
                squares[name] = torch.zeros_like(sums[name])
                counts[name] = 0
            sums[name] += x.sum(dim=0)
            squares[name] += (x * x).sum(dim=0)
            counts[name] += len(x)
    if not sums:
        raise ValueError("no training features to standardise with")
    out = {}
    for name, total in sums.items():
        mean = total / counts[name]
        var = (squares[name] / counts[name] - mean * mean).clamp_min(0.0)
        out[name] = Standardise(mean, var.sqrt())
    return out


def _normalise() -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def augment_transform(input_size: int) -> T.Compose:
    """The paper's training crops: Resize, CenterCrop (256s), RandomCrop (224s), flip."""
    big = resize_size(input_size)
    return T.Compose(
        [
            T.Resize(big),
            T.CenterCrop(big),
            T.RandomCrop(input_size),
            T.RandomHorizontalFlip(),
            _normalise(),
        ]
    )


class StackCrops:
    """Normalise each crop of a tuple of PIL crops and stack them: (crops, 3, H, W).

    A class rather than a lambda so that DataLoader workers can pickle it.
    """

    def __init__(self) -> None:
        self.normalise = _normalise()

    def __call__(self, crops: tuple[Any, ...]) -> torch.Tensor:
        return torch.stack([self.normalise(crop) for crop in crops])


def eval_transform(input_size: int, ten_crop: bool) -> Callable[[Any], torch.Tensor]:
    """Validation view: centre crop, or the ten crops stacked (10, 3, S, S)."""
    if not ten_crop:
        return clustering_transform(input_size)
    return T.Compose([T.Resize(resize_size(input_size)), T.TenCrop(input_size), StackCrops()])


def crop_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities: softmax of (N, C) logits, or the mean over crops of the softmax
    of (N, crops, C) logits."""
    probabilities = logits.softmax(dim=-1)
    return probabilities.mean(dim=1) if probabilities.dim() == 3 else probabilities


@dataclass
class LayerReport:
    """The probe of one layer.

    Attributes:
        dim: Feature width.
        pooling: How the layer was pooled.
        history: Validation scores after every epoch (``epoch`` 1-based, ``top1``, ``top5``).
        head: The trained classifier (``Standardise -> Linear`` with the stable protocol);
            not written to the results.
    """

    dim: int
    pooling: str
    history: list[dict[str, float]] = field(default_factory=list)
    head: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def best(self) -> dict[str, float]:
        """The epoch of highest top-1 (the earliest on ties)."""
        return max(self.history, key=lambda scores: scores["top1"])

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1]

    @property
    def mean_last_10(self) -> dict[str, float]:
        """The mean scores of the last ``min(10, epochs)`` epochs (``epochs``: how many)."""
        tail = self.history[-10:]
        means = {
            key: sum(scores[key] for scores in tail) / len(tail)
            for key in tail[0]
            if key != "epoch"
        }
        return {"epochs": len(tail), **means}

    def as_dict(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "pooling": self.pooling,
            "best": self.best,
            "last": self.last,
            "mean_last_10": self.mean_last_10,
            "history": self.history,
        }


def _training_batches(
    features: FrozenFeatures,
    data: EvalData,
    options: LinearProbeOptions,
    runtime: Runtime,
    cache: FeatureCache,
) -> Callable[[], Batches]:
    """A callable giving one epoch of (layer features, labels) training batches.

    ``cached`` extracts the training features now, once, into ``cache`` and reads back
    shuffled batches of rows every epoch; ``augment`` returns batches of freshly cropped
    images through the trunk.
    """
    size = features.backbone.input_size
    if options.mode == "augment":
        loader = image_loader(
            data.train, augment_transform(size), runtime.batch_size, runtime.workers, runtime.seed
        )

        def augmented() -> Batches:
            for images, labels in loader:
                yield features(images.to(runtime.device)), labels

        return augmented

    view = clustering_transform(size)
    train = cache.extract(features, data.train, view, runtime, "train features")
    labels = torch.as_tensor(data.train.labels)
    generator = torch.Generator().manual_seed(runtime.seed)

    def cached() -> Batches:
        for index in torch.randperm(len(labels), generator=generator).split(runtime.batch_size):
            yield {name: rows.gather(index) for name, rows in train.items()}, labels[index]

    return cached


@torch.no_grad()
def _score(
    heads: nn.ModuleDict, val: dict[str, FeatureFile], labels: torch.Tensor, runtime: Runtime
) -> dict[str, dict[str, float]]:
    """Top-k accuracy of every head, streaming the validation rows a batch at a time."""
    heads.eval()
    labels = labels.to(runtime.device)
    scores = {}
    for name, head in heads.items():
        hits: dict[str, int] = {}
        start = 0
        for chunk in val[name].chunks(runtime.batch_size):
            probabilities = crop_probabilities(head(chunk.to(runtime.device)))
            for key, count in topk_hits(probabilities, labels[start : start + len(chunk)]).items():
                hits[key] = hits.get(key, 0) + count
            start += len(chunk)
        scores[name] = hits_to_accuracy(hits, len(labels))
    return scores


def linear_probe(
    features: FrozenFeatures, data: EvalData, options: LinearProbeOptions, runtime: Runtime
) -> dict[str, LayerReport]:
    """Train and validate a linear classifier on every layer of ``features``.

    Features kept between epochs live in a :class:`FeatureCache` under
    ``runtime.cache_dir``, removed when the probe ends.

    Returns:
        Layer name -> its report (best and last epoch, mean of the last 10, full history,
        trained head).

    Raises:
        UserError: the cache folder cannot be written or lacks the space.
    """
    with FeatureCache(runtime.cache_dir) as cache:
        return _probe(features, data, options, runtime, cache)


def _probe(
    features: FrozenFeatures,
    data: EvalData,
    options: LinearProbeOptions,
    runtime: Runtime,
    cache: FeatureCache,
) -> dict[str, LayerReport]:
    reporter = runtime.reporter
    view = eval_transform(features.backbone.input_size, options.ten_crop)
    crops = TEN_CROPS if options.ten_crop else 1
    val = cache.extract(features, data.val, view, runtime, "val features", crops)
    val_labels = torch.as_tensor(data.val.labels)
    training_batches = _training_batches(features, data, options, runtime, cache)
    linears = {name: nn.Linear(features.dims[name], data.num_classes) for name in features.layers}
    stable = options.protocol == "stable"
    if stable:
        reporter.info("standardising with the training features' statistics")
        statistics = train_statistics((inputs for inputs, _ in training_batches()), runtime.device)
        heads = nn.ModuleDict(
            {name: nn.Sequential(statistics[name], linear) for name, linear in linears.items()}
        )
    else:
        heads = nn.ModuleDict(linears)
    heads = heads.to(runtime.device)
    optimizer = torch.optim.SGD(
        heads.parameters(),
        lr=options.lr,
        momentum=options.momentum,
        weight_decay=options.weight_decay,
    )
    reports = {
        name: LayerReport(features.dims[name], features.pooling[name]) for name in features.layers
    }
    steps_per_epoch = math.ceil(len(data.train) / runtime.batch_size)
    total = steps_per_epoch * options.epochs
    iteration = 0
    for epoch in range(1, options.epochs + 1):
        heads.train()
        batches = reporter.track(training_batches(), steps_per_epoch, f"epoch {epoch}")
        for inputs, labels in batches:
            for group in optimizer.param_groups:
                group["lr"] = (
                    cosine_lr(options.lr, iteration, total)
                    if stable
                    else decayed_lr(options.lr, options.weight_decay, iteration)
                )
            labels = labels.to(runtime.device)
            losses = [
                F.cross_entropy(head(inputs[name].to(runtime.device)), labels)
                for name, head in heads.items()
            ]
            optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            optimizer.step()
            iteration += 1
        scores = _score(heads, val, val_labels, runtime)
        for name, report in reports.items():
            report.history.append({"epoch": epoch, **scores[name]})
        reporter.info(
            f"epoch {epoch}/{options.epochs}  "
            + "  ".join(f"{name} {s['top1']:.1f}" for name, s in scores.items())
        )
    for name, report in reports.items():
        report.head = heads[name]
    return reports
