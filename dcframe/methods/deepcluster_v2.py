"""``deepcluster-v2``: DeepCluster with a memory bank and frozen prototypes.

DeepCluster-v2 (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", appendix) keeps DeepCluster's alternation and changes what goes round
it. :func:`run_epoch` is one epoch, in the paper's order:

0. (first epoch only) fill the memory bank with one pass of the initial network;
1. cluster the bank, once per head: spherical k-means of the L2-normalised projections
   (head ``h`` clusters the projections of large view ``h`` mod the large views);
2. each head's prototypes are its centroids, frozen for the epoch: no classifier is
   thrown away and learnt again;
3. one pass over the images, each seen in multi-crop views; the loss is the cross-entropy
   between softmax(z . c / T) and the image's cluster, averaged over heads and views;
4. the bank takes the new projections of every image's large views, for the next epoch;
5. checkpoint, the bank and the projection head with it.

The projection head (:class:`~dcframe.components.heads.ProjectionHead`), multi-crop
(``augment.large_crops``, ``augment.small_crops``), spherical k-means (``torch-kmeans``
with ``metric = "spherical"``) and LARS (``optimizer.algorithm``) are the recipe's parts,
not this module's; the engine's session gives the trainer, the loader, the run directory,
resume and the processes, as it gives them to DeepCluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dcframe.components.builtin_params import DeepClusterV2Params
from dcframe.components.heads import ProjectionHead
from dcframe.core.interfaces import Backbone, EpochRecord, Method
from dcframe.engine.batchnorm import synchronise_batchnorm
from dcframe.engine.checkpointing import EpochClusters
from dcframe.engine.devices import to_device
from dcframe.engine.epoch_features import Clustered
from dcframe.engine.protocol import (
    STREAM_CLUSTER,
    STREAM_KNN,
    FeatureSignals,
    Session,
    epoch_gallery,
    measure,
    pass_hooks,
    sample_images,
    stage,
    with_totals,
)
from dcframe.engine.training import PassHooks, PassProgress, TrainingSample
from dcframe.methods.memory_bank import MemoryBank

# The first epoch's pass that fills the bank draws its crops from a stream of its own.
STREAM_FILL = 6


class MultiCropNetwork(nn.Module):
    """The trunk and the projection head over a list of views: the views of one size go
    through as one batch (and share BatchNorm statistics), as in SwAV."""

    def __init__(self, backbone: Backbone, head: ProjectionHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        projections: list[torch.Tensor] = []
        start = 0
        while start < len(views):
            end = start + 1
            while end < len(views) and views[end].shape[-1] == views[start].shape[-1]:
                end += 1
            batch = torch.cat(views[start:end])
            features = self.backbone.head_activation(self.backbone.embed(batch))
            projections += self.head(features).chunk(end - start)
            start = end
        return projections


def prototype_loss(
    projections: list[torch.Tensor],
    prototypes: list[torch.Tensor],
    targets: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cross-entropy between softmax(z . c / T) and the clusters, averaged over the heads
    (``prototypes[h]``, ``targets[h]``) and the views (``projections``)."""
    losses = [
        nn.functional.cross_entropy(z.float() @ c.T / temperature, t, ignore_index=-1)
        for c, t in zip(prototypes, targets, strict=True)
        for z in projections
    ]
    return torch.stack(losses).mean()


@dataclass
class EpochUnderWay:
    """An epoch's clusters and how far its pass got: what a mid-epoch checkpoint keeps.

    Attributes:
        clusters: Every head's assignment, the epoch's measures and timings.
        centroids: Every head's (k, d) centroids, the epoch's prototypes.
        progress: Steps done, and the loss so far.
    """

    clusters: EpochClusters
    centroids: list[np.ndarray]
    progress: PassProgress


class DeepClusterV2(Method):
    """DeepCluster-v2: clusters a memory bank of projections, trains against the frozen
    centroids with multi-crop views (Caron et al. 2020)."""

    Params = DeepClusterV2Params
    params: DeepClusterV2Params

    def __init__(self, params: DeepClusterV2Params) -> None:
        super().__init__(params)
        self.head: ProjectionHead | None = None
        self.bank: MemoryBank | None = None
        self.under_way: tuple[int, EpochUnderWay] | None = None  # (epoch, its state)

    def check_recipe(self, recipe: Any) -> list[str]:
        problems = []
        if recipe.preprocess:
            problems.append(
                "preprocess: method 'deepcluster-v2' clusters its memory bank of L2-normalised "
                "projections as they are; remove the [[preprocess]] steps (preprocess = [])"
            )
        if recipe.optimizer.top_init != "normal":
            problems.append(
                "optimizer.top_init: method 'deepcluster-v2' has no per-epoch top layer (its "
                "prototypes are the centroids); remove optimizer.top_init"
            )
        return problems

    def attach(self, session: Any) -> None:
        parts, trainer, recipe = session.parts, session.trainer, session.recipe
        backbone, world = parts.backbone, trainer.world
        device = trainer.devices.network
        head = ProjectionHead(
            backbone.feature_dim, self.params.hidden_dim, self.params.projection_dim
        ).to(device)
        if recipe.run.sync_batchnorm and world.size > 1:
            head = synchronise_batchnorm(head, on_gpu=device.type == "cuda")  # type: ignore[assignment]
        trainer.body_optimizer.add_param_group({"params": list(head.parameters())})
        # DeepCluster's classifier has no part here; the trunk keeps one, never trained, so
        # that the run's checkpoints load like any run's (evaluation, export).
        backbone.reset_top_layer(parts.clusterer.k)
        self.head = head
        views = recipe.augment.large_crops
        self.bank = MemoryBank(len(parts.dataset), views, self.params.projection_dim, world)

    def state_dict(self) -> dict[str, Any]:
        assert self.head is not None and self.bank is not None
        state: dict[str, Any] = {"head": self.head.state_dict(), "bank": self.bank.state_dict()}
        if self.under_way is not None:
            epoch, now = self.under_way
            state["pass"] = {
                "epoch": epoch,
                "step": now.progress.step,
                "loss_sum": now.progress.loss_sum,
                "seen": now.progress.seen,
                # tensors: the checkpoint loads with weights_only, which refuses numpy arrays
                "assignments": torch.from_numpy(now.clusters.assignments.copy()),
                "centroids": [torch.from_numpy(c.copy()) for c in now.centroids],
                "metrics": now.clusters.metrics,
                "seconds": now.clusters.seconds,
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.head is not None and self.bank is not None
        if not state:
            return
        self.head.load_state_dict(state["head"])
        self.bank.load_state_dict(state["bank"])
        saved = state.get("pass")
        if saved is None:
            return
        # The totals so far stay on the main process only, so that the sum over processes
        # is right whatever their number (as DeepCluster's mid-epoch resume does).
        main = self.bank.world.is_main
        progress = PassProgress(
            int(saved["step"]),
            float(saved["loss_sum"]) if main else 0.0,
            int(saved["seen"]) if main else 0,
        )
        clusters = EpochClusters(
            saved["assignments"].numpy(), dict(saved["metrics"]), dict(saved["seconds"])
        )
        centroids = [c.numpy() for c in saved["centroids"]]
        self.under_way = (int(saved["epoch"]), EpochUnderWay(clusters, centroids, progress))

    def cannot_assign(self) -> str | None:
        return (
            "method deepcluster-v2 clusters its projection head's outputs, which `dcframe "
            "assign` does not compute"
        )

    def run_epoch(
        self, epoch: int, session: Any, previous: np.ndarray | None, resumed: Any
    ) -> EpochRecord:
        return run_epoch(epoch, session, previous, self)

    def network(self, session: Session) -> nn.Module:
        """The module a pass trains: trunk and projection head, wrapped for the processes."""
        assert self.head is not None
        backbone = session.parts.backbone
        assert backbone.top_layer is not None
        backbone.top_layer.requires_grad_(False)  # unused: DDP wants no idle parameter
        return session.trainer.parallel(MultiCropNetwork(backbone, self.head))


def run_epoch(
    epoch: int, session: Session, previous: np.ndarray | None, method: DeepClusterV2
) -> EpochRecord:
    """One DeepCluster-v2 epoch, in the paper's order; returns what the loggers got."""
    assert method.bank is not None
    now = _stopped_pass(epoch, method)
    if now is None:
        filled = None if method.bank.filled else fill_bank(epoch, session, method)  # 0.
        now = cluster_bank(epoch, session, previous, method)  # 1. k-means of the bank
        if filled is not None:
            now.clusters.seconds["fill"] = filled
    clusters = now.clusters
    with stage(clusters.seconds, epoch, "train"):
        device = session.trainer.devices.network
        prototypes = frozen_prototypes(now.centroids, device)  # 2. frozen prototypes
        sample = sample_images(epoch, session, clusters.assignments)  # the sampler's order
        hooks = pass_hooks(epoch, session, _saver(epoch, session, method, now))
        clusters.metrics["train_loss"] = train_pass(  # 3. multi-crop pass, 4. the bank
            session, method, sample, now, prototypes=prototypes, hooks=hooks
        )
    method.under_way = None
    metrics = with_totals(clusters, len(sample.indices), session.bad_images)
    assignment = clusters.assignments[0]  # k's clustering: the epoch's record
    record = EpochRecord(metrics, assignment, epoch_gallery(epoch, session, assignment))
    session.recorder.epoch_finished(epoch, record, session.bad_images.skipped)  # 5. checkpoint
    return record


def fill_bank(epoch: int, session: Session, method: DeepClusterV2) -> float:
    """Step 0 (the first epoch): every readable image's large views through the initial
    network, into the bank (no learning; images found unreadable are left out from now
    on). Its duration in seconds."""
    assert method.bank is not None
    readable = session.bad_images.readable_mask()
    everything = np.arange(len(session.parts.dataset))
    indices = everything if readable is None else everything[readable]
    crops = session.rng(epoch, STREAM_FILL).integers(2**63 - 1, size=len(indices))
    sample = _by_image(TrainingSample(indices, np.zeros((1, 0)), crops), len(everything))
    model = method.network(session)
    bank, views = method.bank, method.bank.views

    def embed(batch: tuple[Any, Any], global_batch: int) -> tuple[torch.Tensor, int]:
        images, index = _views(batch[0], session), batch[1]
        with torch.no_grad(), session.trainer.autocast():
            projections = model(images[:views])
        bank.write(index.numpy(), torch.stack(projections, 1).float().cpu().numpy())
        return torch.zeros((), device=projections[0].device), len(index)

    seconds: dict[str, float] = {}
    with stage(seconds, epoch, "filling the memory bank"):
        model.train()  # BatchNorm on batch statistics, as the passes that follow
        session.trainer.run_pass(
            session.loader,
            sample,
            PassProgress(),
            PassHooks(),
            learn=embed,
            optimizers=[],
            reporter=session.reporter,
            bad_images=session.bad_images,
        )
    bank.filled = True
    return seconds["filling the memory bank"]


def cluster_bank(
    epoch: int, session: Session, previous: np.ndarray | None, method: DeepClusterV2
) -> EpochUnderWay:
    """Step 1: the bank clustered once per head, each with a seed of its own, and the
    epoch's measures (``previous``: the last epoch's assignment, for the stability)."""
    assert method.bank is not None
    parts, bank = session.parts, method.bank
    readable = session.bad_images.readable_mask()
    seconds: dict[str, float] = {}
    signals = FeatureSignals()
    with stage(seconds, epoch, "knn"):  # the learning signal, on the bank's first view
        labels = parts.dataset.labels
        if labels is not None:
            first = bank.features(0, readable, parts.clusterer)
            rng = session.rng(epoch, STREAM_KNN)
            signals.knn_accuracy = first.knn_accuracy(labels, session.knn, rng)
    with stage(seconds, epoch, "cluster"):
        heads = _cluster(epoch, session, bank, readable)
        session.recorder.clustered(epoch, heads, parts)  # distances, `dcframe clusters`
        session.trainer.stop_if_asked("after the clustering")
    metrics = measure(epoch, session, heads, previous, signals)
    assignments = np.stack([head.assignment for head in heads])
    clusters = EpochClusters(assignments, metrics, seconds)
    return EpochUnderWay(clusters, [head.centroids for head in heads], PassProgress())


def _cluster(
    epoch: int, session: Session, bank: MemoryBank, readable: np.ndarray | None
) -> list[Clustered]:
    parts, device = session.parts, session.trainer.devices.clusterer
    clusterers = [parts.clusterer, *parts.extra_clusterers]
    seeds = session.rng(epoch, STREAM_CLUSTER).integers(2**31 - 1, size=len(clusterers))
    heads = []
    for h, (clusterer, seed) in enumerate(zip(clusterers, seeds, strict=True)):
        features = bank.features(h % bank.views, readable, clusterer)
        features.check()
        heads.append(features.cluster(clusterer, int(seed), device, session.reporter))
    return heads


def frozen_prototypes(centroids: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Step 2: each head's prototypes, its centroids at unit length, fixed for the epoch."""
    return [
        nn.functional.normalize(torch.from_numpy(c).float(), dim=1).to(device) for c in centroids
    ]


def train_pass(
    session: Session,
    method: DeepClusterV2,
    sample: TrainingSample,
    now: EpochUnderWay,
    *,
    prototypes: list[torch.Tensor],
    hooks: PassHooks,
) -> float:
    """Steps 3 and 4: one pass over ``sample`` in multi-crop views against the frozen
    prototypes; the bank takes each image's large views. The mean loss."""
    assert method.bank is not None
    trainer, bank = session.trainer, method.bank
    temperature, views = method.params.temperature, bank.views
    device = trainer.devices.network
    targets = torch.from_numpy(now.clusters.assignments).to(device)  # (heads, N)
    model = method.network(session)
    model.train()

    def learn(batch: tuple[Any, Any], global_batch: int) -> tuple[torch.Tensor, int]:
        images, index = _views(batch[0], session), batch[1]
        with trainer.autocast():
            projections = model(images)
        loss = prototype_loss(projections, prototypes, targets[:, index.to(device)], temperature)
        # weighted so that DDP's average over processes is the global batch's mean
        share = len(index) * trainer.world.size / global_batch
        trainer.body_optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss * share).backward()
        trainer.scaler.step(trainer.body_optimizer)
        trainer.scaler.update()
        large = torch.stack(projections[:views], 1).detach().float().cpu().numpy()
        bank.write(index.numpy(), large)
        return loss.detach(), len(index)

    by_image = _by_image(sample, len(session.parts.dataset))
    return trainer.run_pass(
        session.loader,
        by_image,
        now.progress,
        hooks,
        learn=learn,
        optimizers=[trainer.body_optimizer],
        reporter=session.reporter,
        bad_images=session.bad_images,
    )


def _by_image(sample: TrainingSample, num_images: int) -> TrainingSample:
    """``sample`` whose loader target is each image's own index (the pass looks the
    heads' clusters up on the device, and writes the bank by index)."""
    return TrainingSample(sample.indices, np.arange(num_images)[None], sample.seeds)


def _views(images: Any, session: Session) -> list[torch.Tensor]:
    """A step's views on the network's device: multi-crop's list, or the one view."""
    device = session.trainer.devices.network
    return [to_device(v, device) for v in (images if isinstance(images, list) else [images])]


def _stopped_pass(epoch: int, method: DeepClusterV2) -> EpochUnderWay | None:
    """The pass of ``epoch`` that a mid-epoch checkpoint stopped in, if any."""
    if method.under_way is None or method.under_way[0] != epoch:
        return None
    return method.under_way[1]


def _saver(
    epoch: int, session: Session, method: DeepClusterV2, now: EpochUnderWay
) -> Callable[[PassProgress], None]:
    """The mid-epoch checkpoint of this epoch's pass (every process calls it at once)."""

    def save(progress: PassProgress) -> None:
        loss_sum, seen = session.trainer.totals(progress)  # over every process
        saved = PassProgress(progress.step, loss_sum, seen)
        method.under_way = (epoch, EpochUnderWay(now.clusters, now.centroids, saved))
        session.recorder.pass_interrupted(epoch, session.bad_images.skipped)
        method.under_way = None

    return save
