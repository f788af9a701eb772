"""The engine's door: :func:`run` opens a run, resumes it where it stopped, runs its
epochs (:func:`~dcframe.engine.protocol.run_epoch`) and finishes it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcframe.core.distributed import World, lost_peer
from dcframe.core.errors import RunStopped, UserError, reworded
from dcframe.core.interfaces import RunInfo
from dcframe.core.progress import Reporter
from dcframe.core.stop_signals import StopRequest
from dcframe.data.bad_images import BadImagePolicy
from dcframe.data.image_cache import DecodedImageCache
from dcframe.data.view_cache import GIB, ClusteringViewCache
from dcframe.engine.checkpointing import MidEpoch, Recorder
from dcframe.engine.epoch_features import KnnSignal
from dcframe.engine.logbook import Logbook
from dcframe.engine.protocol import Session
from dcframe.engine.schedule import LearningRate
from dcframe.engine.setup import (
    Components,
    build_components,
    check_images,
    check_sizes,
    resolve_devices,
)
from dcframe.engine.top_init import HeadInputs
from dcframe.engine.training import Trainer
from dcframe.recipe import dumps
from dcframe.store.rundir import RunDirectory, versions


@dataclasses.dataclass
class _Resumed:
    """Where the epoch loop starts: the first epoch to run, the assignment of the one
    before it (for ``nmi_vs_previous``), and the pass an interrupted epoch stopped in."""

    epoch: int = 0
    previous: np.ndarray | None = None
    interrupted: MidEpoch | None = None


def run(recipe: Any, *, resume: bool = False, reporter: Reporter | None = None) -> RunDirectory:
    """Run (or resume) a whole training described by a validated recipe, each epoch by the
    recipe's method (``method.name``: DeepCluster, DeepCluster-v2, a plugin's).

    The run holds an exclusive lock on its directory throughout. A folder without a
    finished epoch is started afresh; one with a finished epoch needs ``resume``. Under
    torchrun every process calls this; the main process (rank 0) writes the results.

    Raises:
        UserError: anything about the recipe, the data or the machine that the user can fix;
            all of these are checked before the first feature-extraction pass. A failure
            during an epoch names the epoch and the stage; the last finished epoch's
            checkpoint is kept.
        RunStopped: SIGTERM or SIGUSR1 arrived; the saved state resumes the run.
    """
    settings, resolved = recipe.run, dumps(recipe)
    rundir = RunDirectory(Path(settings.output_dir) / settings.name)
    with _opened(recipe, rundir, resolved, resume, reporter or Reporter()) as (session, state):
        start = _resume(session, state, resolved, resume)
        _announce(session, start.epoch, settings)
        previous, interrupted = start.previous, start.interrupted
        for epoch in range(start.epoch, settings.epochs):
            session.reporter.begin_epoch(epoch, settings.epochs)
            with _failure_keeps_checkpoint(session, epoch):
                record = session.parts.method.run_epoch(epoch, session, previous, interrupted)
            previous, interrupted = record.assignment, None
            session.reporter.epoch(record.metrics, settings.epochs)
    return rundir


@contextlib.contextmanager
def _opened(
    recipe: Any, rundir: RunDirectory, resolved: str, resume: bool, reporter: Reporter
) -> Iterator[tuple[Session, dict[str, Any] | None]]:
    """The run's session and its saved state (None: nothing to resume), with the run
    directory locked, the stop signals caught and the processes joined until the end.

    Everything that can be checked without extracting a feature is checked here first.
    """
    settings = recipe.run
    torch.manual_seed(settings.seed)
    parts = build_components(recipe)
    devices = resolve_devices(settings, parts.clusterer, reporter)
    world = World.from_environment(devices.network.type == "cuda", settings.collective_timeout)
    if not world.is_main:
        reporter = Reporter(quiet=True)  # one process reports
    if world.device.type == "cuda":
        devices = dataclasses.replace(devices, network=world.device)
    check_sizes(recipe, parts, world.size)
    bad_images = BadImagePolicy(
        recipe.data.on_bad_image, recipe.data.max_bad_fraction, len(parts.dataset), {}, reporter
    )
    check_images(parts.dataset, parts.backbone.input_size, settings.seed, bad_images)
    stop = StopRequest()
    names = [logger.name for logger in recipe.loggers]
    logbook = Logbook(parts.loggers if world.is_main else [], names, reporter)
    finished = False
    try:
        with stop.listening(), world.on_main(rundir.open()), contextlib.ExitStack() as ending:
            state = world.run_on_main(lambda: rundir.start(resolved, resume))
            trainer = Trainer.create(recipe, parts.backbone, devices, world, stop)
            steps_per_epoch = _steps_per_epoch(parts, recipe.optimizer.batch_size)
            view_cache = _view_cache(settings, rundir, parts, world, reporter)
            images = _image_cache(trainer, settings, rundir, view_cache, len(parts.dataset))
            if images is not None:
                assert trainer.augmentation is not None
                trainer.augmentation.cache = ending.enter_context(contextlib.closing(images))
            session = Session(
                seed=settings.seed,
                parts=parts,
                trainer=trainer,
                reporter=reporter,
                bad_images=bad_images,
                loader=ending.enter_context(contextlib.closing(trainer.loader_for(parts.dataset))),
                recorder=Recorder(
                    rundir=rundir,
                    world=world,
                    trainer=trainer,
                    backbone_name=recipe.backbone.name,
                    k=parts.clusterer.k,
                    keep_every=settings.checkpoint_every,
                    logbook=logbook,
                    recipe=resolved,
                    keep_clusters_every=settings.keep_clusters_every,
                    method=parts.method,
                ),
                logbook=logbook,
                steps_per_epoch=steps_per_epoch,
                knn=KnnSignal(settings.knn_k, settings.knn_queries, devices.network),
                view_cache=view_cache,
                learning_rate=LearningRate.from_recipe(
                    recipe.optimizer, settings.epochs, steps_per_epoch
                ),
                head_inputs=HeadInputs() if recipe.optimizer.top_init == "centroids" else None,
                recipe=recipe,
            )
            parts.method.attach(session)  # before a resume loads what it built
            yield session, state
        finished = True
    finally:
        logbook.close()
        world.close(finished)


def _resume(
    session: Session, state: dict[str, Any] | None, resolved: str, resume: bool
) -> _Resumed:
    """Restore the saved state, if any; else write the new run's recipe and versions."""
    recorder, world, reporter = session.recorder, session.trainer.world, session.reporter
    rundir = recorder.rundir
    if state is None:
        if resume:
            reporter.info(f"{rundir.path} has no finished epoch: starting from epoch 0")
        world.run_on_main(lambda: _start_files(rundir, resolved, session.parts))
        return _Resumed()
    start = _Resumed(int(state["epoch"]), None, recorder.restore(state))
    if start.epoch > 0:
        start.previous = world.run_on_main(lambda: rundir.load_assignment(start.epoch - 1))
    session.bad_images.skipped.update(world.run_on_main(rundir.load_skipped))
    where = f" step {start.interrupted.progress.step}" if start.interrupted else ""
    reporter.info(f"resuming {rundir.path} at epoch {start.epoch}{where}")
    return start


def _announce(session: Session, start_epoch: int, settings: Any) -> None:
    """Open the loggers and say what is about to run."""
    rundir, world, parts = session.recorder.rundir, session.trainer.world, session.parts
    devices = session.trainer.devices
    info = RunInfo(
        rundir.path, settings.name, start_epoch, settings.epochs, session.steps_per_epoch
    )
    world.run_on_main(lambda: session.logbook.open(info))
    session.reporter.info(
        f"run {rundir.path}: {len(parts.dataset)} images, k={parts.clusterer.k}"
        + "".join(f"+{c.k}" for c in parts.extra_clusterers)
        + ", "
        f"device {devices.network} (clustering on {devices.clusterer})"
        + (f", {world.size} processes" if world.size > 1 else "")
    )


@contextlib.contextmanager
def _failure_keeps_checkpoint(session: Session, epoch: int) -> Iterator[None]:
    """A user error in an epoch says which checkpoint is kept; the images found unreadable
    so far are saved with it. A collective that fails because another process ended (a
    crash, a kill, torchrun stopping the run) is such an error too, not a bug of this one."""
    try:
        yield
    except UserError as error:
        raise _kept(session, epoch, error) from error
    except Exception as error:
        trainer = session.trainer
        cause = lost_peer(error) if trainer.world.distributed else None
        if cause is None:
            raise
        if trainer.stop.requested:  # torchrun's stop reached this process as the other ended
            stopped = trainer.stop.stopped(
                f"in epoch {epoch}, after another process of the run ended"
            )
            raise _kept(session, epoch, stopped) from error
        lost = UserError(f"another process of the run has ended ({cause}); see its message")
        raise _kept(session, epoch, lost) from error


def _kept(session: Session, epoch: int, error: UserError) -> UserError:
    """``error`` naming the checkpoint to resume from, the unreadable images saved."""
    # No collective here: the error may have reached this process alone.
    skipped, rundir = session.bad_images.skipped, session.recorder.rundir
    if skipped and session.trainer.world.is_main:
        rundir.save_skipped(skipped)
    mid_epoch = isinstance(error, RunStopped) and error.mid_epoch
    kept = f"; checkpoint.pt keeps epoch {epoch - 1}" if epoch > 0 and not mid_epoch else ""
    return reworded(error, f"{error}{kept}")


def _steps_per_epoch(parts: Components, batch_size: int) -> int:
    """Training steps of an epoch, as the sampler draws them from a balanced assignment (the
    loggers' step axis; samplers draw the same number every epoch)."""
    n, k = len(parts.dataset), parts.clusterer.k
    drawn = parts.sampler.sample(np.arange(n) % k, np.random.default_rng(0))
    return -(-len(drawn) // batch_size)


def _view_cache(
    settings: Any, rundir: RunDirectory, parts: Components, world: World, reporter: Reporter
) -> ClusteringViewCache | None:
    """The run's cache of clustering views, when ``run.view_cache_gib`` holds the dataset."""
    if not settings.view_cache_gib:
        return None
    size, num_images = parts.backbone.input_size, len(parts.dataset)
    needed = ClusteringViewCache.bytes_needed(num_images, size)
    if needed > settings.view_cache_gib * GIB:
        reporter.warn(
            f"run.view_cache_gib: the clustering views of {num_images:,} images at {size} px "
            f"need {needed / GIB:.2f} GiB, more than the {settings.view_cache_gib:g} GiB "
            "allowed: not cached"
        )
        return None
    return ClusteringViewCache(rundir.path / "cache", num_images, size, str(world.rank))


def _image_cache(
    trainer: Trainer,
    settings: Any,
    rundir: RunDirectory,
    view_cache: ClusteringViewCache | None,
    num_images: int,
) -> DecodedImageCache | None:
    """The batched training view's cache of decoded images (``run.augment_on = "device"``),
    in what ``run.view_cache_gib`` leaves after the clustering views; None without a budget,
    and for JPEGs decoded on the device (an option for datasets too big to cache)."""
    if trainer.augmentation is None or trainer.augmentation.jpeg_on_device:
        return None
    budget = int(settings.view_cache_gib * GIB)
    if view_cache is not None:
        budget -= view_cache.pixels.nbytes
    if budget <= 0:
        return None
    tag = str(trainer.world.rank)
    return DecodedImageCache(rundir.path / "cache", num_images, budget, tag)


def _start_files(rundir: RunDirectory, resolved: str, parts: Components) -> None:
    rundir.write_text("recipe.toml", resolved)
    rundir.write_text("versions.json", json.dumps(versions(parts.origins), indent=2) + "\n")
