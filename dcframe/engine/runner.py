"""The engine's door: :func:`run` opens a run, resumes it where it stopped, runs its
epochs (:func:`~dcframe.engine.protocol.run_epoch`) and records each one."""

import contextlib
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcframe.core.distributed import World
from dcframe.core.errors import UserError, reworded
from dcframe.core.interfaces import EpochRecord, RunInfo
from dcframe.core.progress import Reporter
from dcframe.data.bad_images import BadImagePolicy
from dcframe.data.transforms import PixelsOfClusteringView
from dcframe.data.view_cache import GIB, ClusteringViewCache
from dcframe.engine.checkpointing import Recorder
from dcframe.engine.epoch_features import KnnSignal
from dcframe.engine.galleries import gallery_grid
from dcframe.engine.logbook import Logbook
from dcframe.engine.protocol import RunContext, run_epoch
from dcframe.engine.schedule import LearningRate
from dcframe.engine.setup import (
    Components,
    build_components,
    check_images,
    check_sizes,
    resolve_devices,
)
from dcframe.engine.top_init import HeadInputs
from dcframe.engine.training import StopRequest, Trainer
from dcframe.recipe import dumps
from dcframe.store.rundir import RunDirectory, versions


def run(recipe: Any, *, resume: bool = False, reporter: Reporter | None = None) -> RunDirectory:
    """Run (or resume) a whole DeepCluster training described by a validated recipe.

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
    run_cfg = recipe.run
    rundir = RunDirectory(Path(run_cfg.output_dir) / run_cfg.name)
    resolved = dumps(recipe)
    reporter = reporter or Reporter()

    torch.manual_seed(run_cfg.seed)
    parts = build_components(recipe)
    devices = resolve_devices(run_cfg, parts.clusterer, reporter)
    world = World.from_environment(devices.network.type == "cuda", run_cfg.collective_timeout)
    if not world.is_main:
        reporter = Reporter(quiet=True)  # one process reports
    if world.device.type == "cuda":
        devices = dataclasses.replace(devices, network=world.device)
    check_sizes(recipe, parts, world.size)
    bad_images = BadImagePolicy(
        recipe.data.on_bad_image, recipe.data.max_bad_fraction, len(parts.dataset), {}, reporter
    )
    check_images(parts.dataset, parts.backbone.input_size, run_cfg.seed, bad_images)
    stop = StopRequest()
    names = [logger.name for logger in recipe.loggers]
    logbook = Logbook(parts.loggers if world.is_main else [], names, reporter)
    finished = False
    try:
        with stop.listening(), world.on_main(rundir.open()), contextlib.ExitStack() as ending:
            state = world.run_on_main(lambda: rundir.start(resolved, resume))
            trainer = Trainer.create(recipe, parts.backbone, devices, world, stop)
            steps_per_epoch = _steps_per_epoch(parts, recipe.optimizer.batch_size)
            recorder = Recorder(
                rundir,
                world,
                trainer,
                recipe.backbone.name,
                parts.clusterer.k,
                run_cfg.checkpoint_every,
                logbook,
            )
            context = RunContext(
                run_cfg.seed,
                parts,
                trainer,
                reporter,
                bad_images,
                ending.enter_context(contextlib.closing(trainer.loader_for(parts.dataset))),
                recorder,
                _view_cache(run_cfg, rundir, len(parts.dataset), parts, world, reporter),
                KnnSignal(run_cfg.knn_k, run_cfg.knn_queries, devices.network),
                logbook,
                steps_per_epoch,
                LearningRate.from_recipe(recipe.optimizer, run_cfg.epochs, steps_per_epoch),
                HeadInputs() if recipe.optimizer.top_init == "centroids" else None,
            )
            previous: np.ndarray | None = None
            start_epoch, interrupted = 0, None
            if state is not None:
                start_epoch = int(state["epoch"])
                interrupted = recorder.restore(state)
                if start_epoch > 0:
                    previous = world.run_on_main(lambda: rundir.load_assignment(start_epoch - 1))
                bad_images.skipped.update(world.run_on_main(rundir.load_skipped))
                where = f" step {interrupted.progress.step}" if interrupted else ""
                reporter.info(f"resuming {rundir.path} at epoch {start_epoch}{where}")
            else:
                if resume:
                    reporter.info(f"{rundir.path} has no finished epoch: starting from epoch 0")
                world.run_on_main(lambda: _start_files(rundir, resolved, parts))
            info = RunInfo(
                rundir.path, run_cfg.name, start_epoch, run_cfg.epochs, context.steps_per_epoch
            )
            world.run_on_main(lambda: logbook.open(info))
            reporter.info(
                f"run {rundir.path}: {len(parts.dataset)} images, k={parts.clusterer.k}"
                + "".join(f"+{c.k}" for c in parts.extra_clusterers)
                + ", "
                f"device {devices.network} (clustering on {devices.clusterer})"
                + (f", {world.size} processes" if world.size > 1 else "")
            )
            for epoch in range(start_epoch, run_cfg.epochs):
                reporter.begin_epoch(epoch, run_cfg.epochs)
                try:
                    previous, metrics = run_epoch(epoch, context, previous, interrupted)
                except UserError as error:
                    # No collective here: the error may have reached this process alone.
                    if bad_images.skipped and world.is_main:
                        rundir.save_skipped(bad_images.skipped)
                    kept = f"; checkpoint.pt keeps epoch {epoch - 1}" if epoch > 0 else ""
                    raise reworded(error, f"{error}{kept}") from error
                interrupted = None
                record = EpochRecord(metrics, previous, _gallery(context, rundir, epoch, previous))
                recorder.epoch_finished(epoch, record, bad_images.skipped)
                reporter.epoch(metrics, run_cfg.epochs)
        finished = True
    finally:
        logbook.close()
        world.close(finished)
    return rundir


def _steps_per_epoch(parts: Components, batch_size: int) -> int:
    """Training steps of an epoch, as the sampler draws them from a balanced assignment (the
    loggers' step axis; samplers draw the same number every epoch)."""
    n, k = len(parts.dataset), parts.clusterer.k
    drawn = parts.sampler.sample(np.arange(n) % k, np.random.default_rng(0))
    return -(-len(drawn) // batch_size)


def _gallery(
    run: RunContext, rundir: RunDirectory, epoch: int, assignment: np.ndarray
) -> Callable[[], np.ndarray]:
    """Draws the epoch's gallery of its largest clusters when a logger asks for it."""

    def draw() -> np.ndarray:
        path = rundir.distances_path(epoch)
        distances = np.load(path) if path.is_file() else None
        view = PixelsOfClusteringView(run.parts.backbone.input_size)

        def pixels_of(index: int) -> torch.Tensor:
            return view(run.parts.dataset.image(index))

        return gallery_grid(pixels_of, assignment, distances, seed=epoch)

    return draw


def _view_cache(
    run_cfg: Any,
    rundir: RunDirectory,
    num_images: int,
    parts: Components,
    world: World,
    reporter: Reporter,
) -> ClusteringViewCache | None:
    """The run's cache of clustering views, when ``run.view_cache_gib`` holds the dataset."""
    if not run_cfg.view_cache_gib:
        return None
    size = parts.backbone.input_size
    needed = ClusteringViewCache.bytes_needed(num_images, size)
    if needed > run_cfg.view_cache_gib * GIB:
        reporter.warn(
            f"run.view_cache_gib: the clustering views of {num_images:,} images at {size} px "
            f"need {needed / GIB:.2f} GiB, more than the {run_cfg.view_cache_gib:g} GiB allowed: "
            "not cached"
        )
        return None
    return ClusteringViewCache(rundir.path / "cache", num_images, size, str(world.rank))


def _start_files(rundir: RunDirectory, resolved: str, parts: Components) -> None:
    rundir.write_text("recipe.toml", resolved)
    rundir.write_text("versions.json", json.dumps(versions(parts.origins), indent=2) + "\n")
