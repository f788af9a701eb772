"""The training half of an epoch: the network, its optimizers, and one pass over the sample.

In a distributed run every process trains a :class:`~torch.nn.parallel.DistributedDataParallel`
copy of the network on its share of each global batch (``optimizer.batch_size`` is the global
batch, split evenly); gradients are averaged so that every process takes the same step.
Each sample's augmentation is drawn from its own seed, so a sample is cropped alike however
many processes there are, and a pass resumed mid-epoch sees the same crops.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dcframe.core.distributed import World
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone, Dataset
from dcframe.core.progress import Reporter
from dcframe.core.stop_signals import StopRequest
from dcframe.data.bad_images import BadImagePolicy, Unreadable
from dcframe.data.batch_views import BatchTrainingView
from dcframe.data.batched_training import DeviceAugmentation, device_augmented
from dcframe.data.loading import TRAINING, Item, RunLoader, run_views
from dcframe.data.multi_crop import BatchMultiCropView, MultiCropView, training_view
from dcframe.data.prefetch import prefetched
from dcframe.engine.batchnorm import synchronise_batchnorm
from dcframe.engine.devices import Devices, to_device
from dcframe.engine.lars import LARS

# A top layer's (weight, bias) to start from; None: the paper's init.
Start = tuple[torch.Tensor, torch.Tensor] | None
# On a GPU, reading the loss (for the divergence check) and the processes' stop flags waits
# for the device to finish its queue; doing it every few steps keeps the queue full.
GPU_STEPS_PER_CHECK = 16


def loader_workers(setting: int | str) -> int:
    """``run.workers``: a number, or "auto": one loader process per core this process may
    use, less one for the main process, at most 8."""
    if setting != "auto":
        return int(setting)
    return max(0, min(8, len(os.sched_getaffinity(0)) - 1))


def body_optimizer(parameters: Iterable[nn.Parameter], settings: Any) -> torch.optim.SGD:
    """The persistent optimizer of the trunk (and of what a method adds to it):
    ``optimizer.algorithm`` 'sgd' with momentum, or 'lars'."""
    if settings.algorithm == "lars":
        return LARS(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            trust_coefficient=settings.lars_trust,
        )
    return torch.optim.SGD(
        parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )


@dataclass
class PassProgress:
    """How far one epoch's training pass got (what a mid-epoch checkpoint records).

    Attributes:
        step: Steps done.
        loss_sum: Sum of the per-sample losses this process has seen.
        seen: Samples this process has trained on.
    """

    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0


@dataclass(frozen=True)
class TrainingSample:
    """The images of one training pass, in order.

    Attributes:
        indices: Dataset index of each sample (an image may appear several times).
        targets: Pseudo-label of every dataset image, one row per head (the network's own
            top layer first), indexed by dataset index.
        seeds: Each sample's augmentation seed: the same crop whichever process, worker or
            thread loads it, and whenever.
    """

    indices: np.ndarray
    targets: np.ndarray
    seeds: np.ndarray


def _ignore(*_: Any) -> None:
    """A hook that does nothing (a pass outside a run directory saves and logs nothing)."""


@dataclass(frozen=True)
class PassHooks:
    """What the training pass calls back: the run's business, not the pass's.

    Attributes:
        save: Writes a mid-epoch checkpoint of the given progress.
        log: Gets ``(step, running values)`` whenever the loss is read from the device.
        rate: The learning rate at each step of the pass (None: ``optimizer.lr`` throughout).
    """

    save: Callable[[PassProgress], None] = _ignore
    log: Callable[[int, dict[str, float]], None] = _ignore
    rate: Callable[[int], float] | None = None


@dataclass
class Unchecked:
    """The loss of the steps since the last check, summed on the device."""

    loss_sum: torch.Tensor
    seen: int = 0
    steps: int = 0

    def add(self, mean: torch.Tensor, count: int) -> None:
        self.loss_sum += mean.float() * count
        self.seen += count
        self.steps += 1

    def clear(self) -> None:
        self.loss_sum.zero_()
        self.seen = self.steps = 0


class WithExtraHeads(nn.Module):
    """The network with further top layers on the same head input (``clusterer.extra_k``):
    its forward gives one logits tensor per head, the network's own top layer first."""

    def __init__(self, backbone: Backbone, extra: nn.ModuleList) -> None:
        super().__init__()
        self.backbone, self.extra = backbone, extra

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert self.backbone.top_layer is not None
        inputs = self.backbone.head_activation(self.backbone.embed(x))
        return [self.backbone.top_layer(inputs), *(head(inputs) for head in self.extra)]


def _items(sample: TrainingSample, positions: np.ndarray) -> list[Item]:
    """The loader's items of one step: each sample's image, pseudo-label (a tuple with
    several heads) and crop seed."""
    rows = np.atleast_2d(sample.targets)  # one row per head
    items = []
    for position in positions:
        image = int(sample.indices[position])
        target = int(rows[0, image]) if len(rows) == 1 else tuple(rows[:, image].tolist())
        items.append(Item(TRAINING, image, target, int(sample.seeds[position])))
    return items


def mean_cross_entropy(
    output: torch.Tensor | list[torch.Tensor], targets: list[torch.Tensor]
) -> torch.Tensor:
    """The batch's cross-entropy, averaged over the heads when there are several."""
    if isinstance(output, torch.Tensor):
        return nn.functional.cross_entropy(output, targets[0])
    losses = [nn.functional.cross_entropy(o, t) for o, t in zip(output, targets, strict=True)]
    return torch.stack(losses).mean()


@dataclass
class Trainer:
    """The network, its persistent body optimizer and the settings of the training pass.

    ``extra_heads`` are the epoch's further top layers (``clusterer.extra_k``), rebuilt with
    the network's own by :meth:`new_top_layer`; empty in the paper's protocol.
    """

    backbone: Backbone
    body_optimizer: torch.optim.SGD  # or its LARS subclass (optimizer.algorithm)
    optimizer: Any
    devices: Devices
    workers: int
    transform: Any
    world: World = field(default_factory=World)
    stop: StopRequest = field(default_factory=StopRequest)
    checkpoint_every_steps: int = 0
    compile: bool = False
    # fp16 loss scaling lives for the whole run (rebuilt per epoch, its scale would restart
    # at 2**16 and skip the first steps of every epoch); disabled, it does nothing.
    scaler: torch.amp.GradScaler = field(
        default_factory=lambda: torch.amp.GradScaler("cuda", enabled=False)
    )
    extra_heads: nn.ModuleList = field(default_factory=nn.ModuleList)
    # run.augment_on = "device": the batched view (and the decoded-image cache, which the
    # runner attaches); None: PIL in the workers.
    augmentation: DeviceAugmentation | None = None

    @classmethod
    def create(
        cls,
        recipe: Any,
        backbone: Backbone,
        devices: Devices,
        world: World | None = None,
        stop: StopRequest | None = None,
    ) -> Trainer:
        """Move the net to its device and build the body SGD, which lives for the whole run."""
        world = world or World()
        opt = recipe.optimizer
        on_gpu = devices.network.type == "cuda"
        backbone.to(devices.network)
        if on_gpu:  # what the tensor cores' convolutions want; the batches follow (to_device)
            backbone.to(memory_format=torch.channels_last)
        if recipe.run.sync_batchnorm and world.size > 1:
            synchronise_batchnorm(backbone, on_gpu=on_gpu)
        body = body_optimizer(backbone.body_parameters(), opt)
        transform = training_view(backbone.input_size, recipe.augment)
        augmentation = None
        if recipe.run.augment_on == "device":
            batched = (
                BatchMultiCropView(transform, devices.network)
                if isinstance(transform, MultiCropView)
                else BatchTrainingView(transform, devices.network)
            )
            augmentation = DeviceAugmentation(
                batched, jpeg_on_device=recipe.run.jpeg_decode == "device"
            )
        return cls(
            backbone=backbone,
            body_optimizer=body,
            optimizer=opt,
            devices=devices,
            workers=loader_workers(recipe.run.workers),
            transform=transform,
            augmentation=augmentation,
            world=world,
            stop=stop or StopRequest(),
            checkpoint_every_steps=recipe.run.checkpoint_every_steps,
            compile=recipe.run.compile,
            scaler=torch.amp.GradScaler("cuda", enabled=devices.amp_dtype == torch.float16),
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.devices.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.devices.network.type, dtype=self.devices.amp_dtype)

    def loader_for(self, dataset: Dataset) -> RunLoader:
        """The run's one loader of ``dataset``, for the extraction and the training passes."""
        views = run_views(self.backbone.input_size, self.transform)
        on_gpu = self.devices.network.type == "cuda"
        return RunLoader(dataset, views, self.workers, pin_memory=on_gpu)

    def new_top_layer(
        self, k: int, start: Start = None, extra: Sequence[tuple[int, Start]] = ()
    ) -> torch.optim.SGD:
        """Fresh top layer and its momentum-free SGD, rebuilt every epoch: the paper's init
        (N(0, 0.01), bias 0), or ``start`` = (weight, bias). ``extra`` holds the ``(k,
        start)`` of each further head (``clusterer.extra_k``); the same SGD trains them."""
        top = self.backbone.reset_top_layer(k)
        self.extra_heads = nn.ModuleList(self.backbone.new_head(n) for n, _ in extra)
        begins = [start, *(s for _, s in extra)]
        for layer, begin in zip([top, *self.extra_heads], begins, strict=True):
            if begin is not None:
                with torch.no_grad():
                    layer.weight.copy_(begin[0])
                    layer.bias.copy_(begin[1])
        return torch.optim.SGD(
            [*top.parameters(), *self.extra_heads.parameters()],
            lr=self.optimizer.lr,
            weight_decay=self.optimizer.weight_decay,
        )

    def steps(self, num_samples: int) -> list[np.ndarray]:
        """This process's positions in the sample for every step: its share of each global batch."""
        size = self.optimizer.batch_size
        return [
            self.world.shard(np.arange(start, min(start + size, num_samples)))
            for start in range(0, num_samples, size)
        ]

    def _parallel(self) -> nn.Module:
        """The module the pass runs: the network itself, or its DDP wrapper across processes,
        compiled when ``run.compile`` asks.

        Built anew every epoch, since the top layer is new; DDP's construction broadcasts
        the main process's weights, so the new top layer is the same on every process.
        """
        model: nn.Module = self.backbone
        if len(self.extra_heads):
            model = WithExtraHeads(self.backbone, self.extra_heads)
        return self.parallel(model)

    def parallel(self, model: nn.Module) -> nn.Module:
        """``model`` as a pass runs it: wrapped by DDP across processes, compiled when
        ``run.compile`` asks (a method's own network goes through here too)."""
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            on_gpu = self.devices.network.type == "cuda"
            ids = [self.devices.network] if on_gpu else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.compile else model  # type: ignore[return-value]

    def train_pass(
        self,
        loader: RunLoader,
        sample: TrainingSample,
        top: torch.optim.SGD,
        progress: PassProgress,
        hooks: PassHooks,
        *,
        reporter: Reporter | None = None,
        bad_images: BadImagePolicy | None = None,
    ) -> float:
        """One pass over ``sample`` with cross-entropy on its pseudo-labels; the mean loss.
        With extra heads the loss is the mean of the heads' cross-entropies. The pass runs
        as :meth:`run_pass` says.
        """
        self.backbone.train()
        model = self._parallel()

        def learn(batch: tuple[Any, Any], global_batch: int) -> tuple[torch.Tensor, int]:
            return self._step(model, top, batch, global_batch)

        optimizers = [self.body_optimizer, top]
        return self.run_pass(
            loader,
            sample,
            progress,
            hooks,
            learn=learn,
            optimizers=optimizers,
            reporter=reporter,
            bad_images=bad_images,
        )

    def run_pass(
        self,
        loader: RunLoader,
        sample: TrainingSample,
        progress: PassProgress,
        hooks: PassHooks,
        *,
        learn: Callable[[tuple[Any, Any], int], tuple[torch.Tensor, int]],
        optimizers: Sequence[torch.optim.Optimizer],
        reporter: Reporter | None = None,
        bad_images: BadImagePolicy | None = None,
    ) -> float:
        """One training pass over ``sample``, ``learn(batch, global_batch)`` taking each
        step (it returns the batch's mean loss, on the device, and its size); the mean loss.

        Starts at ``progress.step`` (a resumed pass) and calls ``hooks.save`` every
        ``checkpoint_every_steps`` steps and when a stop signal arrives. Whenever the loss
        is read from the device, ``hooks.log(step, values)`` gets the running ``loss``, the
        ``lr`` and the ``images_per_s`` (this process's rate times the processes); the
        progress bar (``reporter``) shows them too. ``hooks.rate(step)``, if given, is the
        learning rate of every one of ``optimizers`` at each step (``optimizer.schedule``).
        Unreadable images go to ``bad_images`` (default: fail at the first).

        Raises:
            UserError: the loss became NaN or infinite on some process (the run diverged).
            RunStopped: a stop signal arrived; ``hooks.save`` has recorded the progress.
        """
        reporter = reporter or Reporter(quiet=True)
        bad_images = bad_images or BadImagePolicy()
        plan = self.steps(len(sample.indices))
        batches = self.batches(loader, [_items(sample, step) for step in plan[progress.step :]])
        batch = self.optimizer.batch_size
        check_every = GPU_STEPS_PER_CHECK if self.devices.network.type == "cuda" else 1
        unchecked = Unchecked(torch.zeros((), device=self.devices.network))
        status: dict[str, str] = {}
        started, done_before = time.perf_counter(), progress.seen
        todo = len(plan) - progress.step
        for images, labels, unreadable in reporter.track(batches, todo, "training", status):
            bad_images.check(unreadable)
            if images is None:  # no image of this step was readable: nothing to learn from
                progress.step += 1
                continue
            if hooks.rate is not None:  # optimizer.schedule: every optimizer follows it
                lr = hooks.rate(progress.step)
                for optimizer in optimizers:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
            global_batch = min(batch, len(sample.indices) - progress.step * batch)
            mean, count = learn((images, labels), global_batch)
            unchecked.add(mean, count)  # stays on the device: no wait here
            progress.step += 1
            every = self.checkpoint_every_steps
            due = bool(every and progress.step % every == 0 and progress.step < len(plan))
            if due or progress.step % check_every == 0 or progress.step == len(plan):
                stop = self.check_loss(unchecked, progress)
                values = self.running(progress, progress.seen - done_before, started)
                status.update(loss=f"{values['loss']:.3f}", rate=f"{values['images_per_s']:.0f}")
                hooks.log(progress.step, values)
                if stop or due:
                    hooks.save(progress)
                if stop:
                    raise self.stop.stopped(f"at training step {progress.step}", mid_epoch=True)
        if unchecked.steps:  # the pass ended on steps without a readable image
            self.check_loss(unchecked, progress)
        if self.augmentation is not None and self.augmentation.cache is not None:
            self.augmentation.cache.save()
        loss_sum, seen = self.totals(progress)
        return loss_sum / max(seen, 1)

    def batches(
        self, loader: RunLoader, steps: list[list[Item]]
    ) -> Iterable[tuple[torch.Tensor | None, Any, list[Unreadable]]]:
        """``(images, targets, unreadable)`` of each step: augmented one image at a time in
        the loader, or as batches on the device (``run.augment_on``)."""
        if self.augmentation is not None:
            return device_augmented(loader, steps, self.augmentation)
        data = loader.load(steps)
        return data if self.workers else prefetched(data)

    def _step(
        self, model: nn.Module, top: torch.optim.SGD, batch: tuple[Any, Any], global_batch: int
    ) -> tuple[torch.Tensor, int]:
        """One optimisation step on ``batch`` (images, labels of each head); the batch's mean
        loss (still on the device) and its number of images."""
        images = to_device(batch[0], self.devices.network)
        labels = batch[1] if isinstance(batch[1], list) else [batch[1]]
        heads = [t.to(self.devices.network, non_blocking=True) for t in labels]
        with self.autocast():
            mean = mean_cross_entropy(model(images), heads)
        # DDP averages gradients over processes; weighting each process's mean by its
        # share of the global batch makes that average the global batch's mean (the
        # factor is exactly 1 in one process and when the batch splits evenly).
        share = len(heads[0]) * self.world.size / global_batch
        self.body_optimizer.zero_grad(set_to_none=True)
        top.zero_grad(set_to_none=True)
        self.scaler.scale(mean * share).backward()
        self.scaler.step(self.body_optimizer)
        self.scaler.step(top)
        self.scaler.update()
        return mean.detach(), len(heads[0])

    def running(self, progress: PassProgress, images: int, since: float) -> dict[str, float]:
        """The pass's running loss, the learning rate, and the images per second of all
        processes since ``since`` (``images`` on this one)."""
        rate = images / max(time.perf_counter() - since, 1e-9)
        return {
            "loss": progress.loss_sum / max(progress.seen, 1),
            "lr": float(self.body_optimizer.param_groups[0]["lr"]),
            "images_per_s": rate * self.world.size,
        }

    def check_loss(self, unchecked: Unchecked, progress: PassProgress) -> bool:
        """Read the steps' losses from the device, stop on a diverged loss, and say whether a
        stop signal reached some process: one host synchronisation and one collective.

        Raises:
            UserError: the loss became NaN or infinite on some process (the run diverged).
        """
        value = float(unchecked.loss_sum)
        stop, diverged = self.world.sum(float(self.stop.requested), float(not math.isfinite(value)))
        if diverged:
            first = progress.step - unchecked.steps
            where = (
                f"step {first}" if unchecked.steps == 1 else f"steps {first}-{progress.step - 1}"
            )
            shown = value if not math.isfinite(value) else "not finite on another process"
            raise UserError(
                f"training {where}: the loss is {shown}; the run diverged. "
                f"Start a new run with a lower optimizer.lr (now {self.optimizer.lr:g}) or "
                f"optimizer.weight_decay (now {self.optimizer.weight_decay:g}), e.g. "
                f"--set optimizer.lr={self.optimizer.lr / 10:g} --set run.name=<new-name>"
            )
        progress.loss_sum += value
        progress.seen += unchecked.seen
        unchecked.clear()
        return bool(stop)

    def stop_if_asked(self, where: str) -> None:
        """Honour a stop signal between stages (the last checkpoint is the one to resume from).

        Raises:
            RunStopped: some process received SIGTERM or SIGUSR1.
        """
        if self.world.any(self.stop.requested):
            raise self.stop.stopped(where)

    def totals(self, progress: PassProgress) -> tuple[float, int]:
        """The loss sum and sample count of the pass so far, over all processes."""
        loss_sum, seen = self.world.sum(progress.loss_sum, progress.seen)
        return loss_sum, int(seen)
