"""What a run saves and restores: its whole state at the end of an epoch, or within one.

``checkpoint.pt`` always holds ``epoch`` (epochs finished), the model (top layer included),
the body optimizer and the random state. A checkpoint written during a training pass
(every ``run.checkpoint_every_steps`` steps, or on a stop signal) also holds ``step`` (steps
done in epoch ``epoch``) and ``partial``: that epoch's clustering metrics, timings, the
loss so far and the top layer's optimizer (with ``clusterer.extra_k``, also the extra heads
and their assignments); the epoch's assignment is saved beside it. A
resumed run then skips the epoch's clustering and continues training at that step, to the
same result as a run that was never stopped.

Everything is written by the main process only, while the others wait
(:meth:`dcframe.core.distributed.World.run_on_main`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from dcframe.core.distributed import World
from dcframe.core.errors import UserError
from dcframe.core.interfaces import EpochRecord, Method, Preprocessor
from dcframe.engine.epoch_features import Clustered
from dcframe.engine.logbook import Logbook
from dcframe.engine.setup import Components
from dcframe.engine.training import PassProgress, Trainer
from dcframe.store.checkpoint_file import load_state
from dcframe.store.clusterings import SavedClustering, SavedHead
from dcframe.store.rundir import RunDirectory

TOP_LAYER = "top_layer."
# The recipe of a resume equals the run's (checked before), so a mismatch is a changed file.
RESUME_ADVICE = (
    "checkpoint.pt was changed outside dcframe: restore it from a backup, or start a new run "
    "with --set run.name=<new-name>"
)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class EpochClusters:
    """The clustering half of an epoch (steps 1-5), as the training half takes it and a
    mid-epoch checkpoint keeps it.

    Attributes:
        assignments: One row per head (-1: left out as unreadable): the clustering with
            ``clusterer.k``, the epoch's record, then one per ``clusterer.extra_k`` value.
        metrics: The epoch's measures so far.
        seconds: The duration of each stage so far.
    """

    assignments: np.ndarray
    metrics: dict[str, Any]
    seconds: dict[str, float]


@dataclass
class MidEpoch:
    """An epoch whose training pass stopped at ``progress.step``: what resuming it needs.

    The extra heads' top layers (``clusterer.extra_k``) are ``extra_heads``.
    """

    clusters: EpochClusters
    progress: PassProgress
    top_layer: dict[str, torch.Tensor]
    top_optimizer: dict[str, Any]
    rng: dict[str, Any]
    extra_heads: dict[str, torch.Tensor] | None = None

    def continue_pass(self, trainer: Trainer, top: torch.optim.SGD) -> None:
        """Put the new top layers, their optimizer and the random state back as they were."""
        assert trainer.backbone.top_layer is not None
        trainer.backbone.top_layer.load_state_dict(self.top_layer)
        if self.extra_heads is not None:
            trainer.extra_heads.load_state_dict(self.extra_heads)
        top.load_state_dict(self.top_optimizer)
        set_rng_state(self.rng)


def _every(n: int, epoch: int) -> bool:
    """Whether ``epoch`` is one of every ``n``-th (``run.checkpoint_every`` and the like)."""
    return n > 0 and (epoch + 1) % n == 0


def _step_states(
    chain: list[Preprocessor],
) -> tuple[list[dict[str, np.ndarray] | None], list[str]]:
    """Each fitted step's state arrays (None where a step cannot give them), and why not."""
    states: list[dict[str, np.ndarray] | None] = []
    missing = []
    for i, step in enumerate(chain):
        try:
            states.append(step.state_arrays())
        except NotImplementedError:
            states.append(None)
            missing.append(f"preprocess[{i}] ({type(step).__name__}) has no state_arrays()")
    return states, missing


@dataclass
class Recorder:
    """Saves a run's results and state; the main process writes, the others wait."""

    rundir: RunDirectory
    world: World
    trainer: Trainer
    backbone_name: str
    k: int
    keep_every: int
    logbook: Logbook
    recipe: str  # the resolved recipe, saved with every clustering
    keep_clusters_every: int
    method: Method | None = None  # what it trains besides the backbone goes in the checkpoint
    _said_missing: bool = field(default=False, init=False)

    def _method_state(self) -> dict[str, Any]:
        """The method's state, on the main process (a collective: every process calls it)."""
        return {} if self.method is None else self.method.state_dict()

    def _state(self, epoch: int, method: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "backbone": self.backbone_name,
            "k": self.k,
            "model": self.trainer.backbone.state_dict(),
            "body_optimizer": self.trainer.body_optimizer.state_dict(),
            "rng": rng_state(),
            "grad_scaler": self.trainer.scaler.state_dict(),
            "method": method,
        }

    def clustered(self, epoch: int, heads: list[Clustered], parts: Components) -> None:
        """The distances of the epoch's clustering and what defines it (written as soon as
        it exists, before training changes the trunk; a redone clustering writes the same
        values)."""

        def write() -> None:
            steps, missing = _step_states(parts.preprocessors)
            reason = parts.method.cannot_assign()
            if reason:
                missing.append(reason)
            if not parts.clusterer.places_new_rows():
                missing.append(
                    f"clusterer {type(parts.clusterer).__name__} does not implement assign()"
                )
            # the distances exist on the main process, where this runs
            distances = [cast(np.ndarray, head.distances) for head in heads]
            self.rundir.save_distances(epoch, distances[0])
            trunk = {
                name: value.detach().cpu().numpy()
                for name, value in self.trainer.backbone.state_dict().items()
                if not name.startswith(TOP_LAYER)
            }
            saved = [
                SavedHead(h.centroids, h.assignment, d)
                for h, d in zip(heads, distances, strict=True)
            ]
            self.rundir.save_clustering(
                SavedClustering(
                    epoch=epoch,
                    recipe=self.recipe,
                    trunk=trunk,
                    steps=steps,
                    heads=saved,
                    missing=tuple(missing),
                )
            )
            if missing and not self._said_missing:
                self._said_missing = True
                self.logbook.reporter.warn(
                    f"{'; '.join(missing)}: `dcframe assign` cannot place new images in this "
                    "run's clusters (`dcframe clusters` still lists its images)"
                )

        self.world.run_on_main(write)

    def epoch_finished(self, epoch: int, record: EpochRecord, skipped: dict[int, Any]) -> None:
        """Step 9: the epoch's assignment, metrics (every logger) and checkpoint, in the order
        a resume relies on."""
        method = self._method_state()

        def write() -> None:
            if skipped:
                self.rundir.save_skipped(skipped)
            self.rundir.save_assignment(epoch, record.assignment)
            self.logbook.epoch(record)
            keep = _every(self.keep_every, epoch)
            self.rundir.save_checkpoint(self._state(epoch + 1, method), epoch if keep else None)
            if epoch and not _every(self.keep_clusters_every, epoch - 1):
                self.rundir.drop_clustering(epoch - 1)  # this epoch's replaces it

        self.world.run_on_main(write)

    def epoch_interrupted(
        self,
        epoch: int,
        clusters: EpochClusters,
        progress: PassProgress,
        top: torch.optim.SGD,
        skipped: dict[int, Any],
    ) -> None:
        """A mid-epoch checkpoint: the state after ``progress.step`` training steps."""
        loss_sum, seen = self.trainer.totals(progress)  # over every process
        assignments = clusters.assignments
        metrics = {k: v for k, v in clusters.metrics.items() if k != "train_loss"}
        seconds = dict(clusters.seconds)
        method = self._method_state()

        def write() -> None:
            if skipped:
                self.rundir.save_skipped(skipped)
            self.rundir.save_assignment(epoch, assignments[0])
            partial = {
                "metrics": metrics,
                "seconds": seconds,
                "loss_sum": loss_sum,
                "seen": seen,
                "top_optimizer": top.state_dict(),
            }
            if len(assignments) > 1:
                # a tensor: the checkpoint loads with weights_only, which refuses numpy arrays
                partial["extra_assignments"] = torch.from_numpy(assignments[1:].copy())
                partial["extra_heads"] = self.trainer.extra_heads.state_dict()
            self.rundir.save_checkpoint(
                {**self._state(epoch, method), "step": progress.step, "partial": partial}
            )

        self.world.run_on_main(write)

    def _versions_on_resume(self, epoch: int) -> None:
        """Record this resume's versions; warn when they differ from the start's."""
        warning = self.rundir.record_resume(epoch)
        if warning:
            self.logbook.reporter.warn(warning)

    def restore(self, state: dict[str, Any]) -> MidEpoch | None:
        """Load a checkpoint into the run; the interrupted epoch's pass, if it was one.

        Raises:
            UserError: the checkpoint does not fit this recipe's model.
        """
        backbone, path = self.trainer.backbone, self.rundir.checkpoint_path
        try:
            backbone.reset_top_layer(int(state["k"]))  # so that the saved top layer fits
            load_state(backbone, state["model"], path, RESUME_ADVICE)
            self.trainer.body_optimizer.load_state_dict(state["body_optimizer"])
            if state.get("grad_scaler"):
                self.trainer.scaler.load_state_dict(state["grad_scaler"])
            set_rng_state(state["rng"])
            if self.method is not None:
                self.method.load_state_dict(state.get("method") or {})
        except UserError as error:
            raise UserError(f"--resume: {error}") from error
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"--resume: {path} does not fit this recipe's model "
                f"({str(error).splitlines()[0][:300]}); {RESUME_ADVICE}"
            ) from error
        self.world.run_on_main(lambda: self._versions_on_resume(int(state["epoch"])))
        if "partial" not in state:  # at an epoch's end, or a method that resumes its own pass
            return None
        epoch, partial = int(state["epoch"]), state["partial"]
        # Every process resumes with the totals so far on the main process only, so that
        # the totals over processes stay right whatever the number of processes.
        main = self.world.is_main
        progress = PassProgress(
            int(state["step"]),
            float(partial["loss_sum"]) if main else 0.0,
            int(partial["seen"]) if main else 0,
        )
        top = {
            k.removeprefix(TOP_LAYER): v
            for k, v in state["model"].items()
            if k.startswith(TOP_LAYER)
        }
        assignment = self.world.run_on_main(lambda: self.rundir.load_assignment(epoch))
        extra = partial.get("extra_assignments", torch.zeros(0, len(assignment), dtype=torch.long))
        clusters = EpochClusters(
            np.vstack([assignment, extra.numpy()]),
            dict(partial["metrics"]),
            dict(partial["seconds"]),
        )
        return MidEpoch(
            clusters=clusters,
            progress=progress,
            top_layer=top,
            top_optimizer=partial["top_optimizer"],
            rng=state["rng"],
            extra_heads=partial.get("extra_heads"),
        )

    def pass_interrupted(self, epoch: int, skipped: dict[int, Any]) -> None:
        """A mid-epoch checkpoint of a method that keeps its pass's progress in its own state
        (:meth:`Method.state_dict`): ``epoch`` is the epoch under way."""
        method = self._method_state()

        def write() -> None:
            if skipped:
                self.rundir.save_skipped(skipped)
            self.rundir.save_checkpoint(self._state(epoch, method))

        self.world.run_on_main(write)
