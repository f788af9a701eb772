"""Everything the report reads from a run directory, loaded without disturbing a running run.

Only finished epochs are read: the epochs of ``metrics.jsonl``, since a run writes an
epoch's record after its assignment and before moving on. Files of the epoch in progress
(an assignment or distances written ahead of its record) are ignored, and the run's lock
is never taken: the report only reads, and every file it reads is written atomically.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dcframe import recipe as recipes
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone, Dataset
from dcframe.core.progress import Reporter
from dcframe.engine.setup import build_components
from dcframe.store.lock import LOCK_FILE
from dcframe.store.rundir import RunDirectory

EXAMPLE = "e.g. runs/quickstart (the folder <run.output_dir>/<run.name> of a `dcframe run`)"


@dataclass(frozen=True)
class EvalResult:
    """One results file of ``dcframe eval`` found in ``RUN_DIR/eval``.

    Attributes:
        command: ``linear-probe``, ``knn`` or ``clusters``.
        tag: What was evaluated: ``latest``, ``epoch_0009``, ``random-alexnet``, ...
        random_init: The tag names a randomly initialised network.
        payload: The whole JSON object (``results`` per layer, ``options``, ``model``, ...).
    """

    command: str
    tag: str
    random_init: bool
    payload: dict[str, Any]


@dataclass
class RunData:
    """A run as the report sees it.

    Attributes:
        path: The run directory.
        recipe: The validated resolved recipe (``recipe.toml``).
        metrics: The records of the finished epochs, in epoch order.
        dataset: The run's dataset, rebuilt from the recipe (images, labels, class names).
        backbone: A freshly built backbone of the recipe (for its input size and Sobel layer;
            its weights are not the run's and are never used).
        k: Number of clusters.
        holder: Who holds the run's lock according to the lock file, or None.
        evals: The evaluation results found in ``RUN_DIR/eval``.
    """

    path: Path
    recipe: Any
    metrics: list[dict[str, Any]]
    dataset: Dataset
    backbone: Backbone
    k: int
    holder: str | None
    evals: list[EvalResult]

    @property
    def epochs(self) -> list[int]:
        """The finished epochs."""
        return [int(r["epoch"]) for r in self.metrics]

    @property
    def planned_epochs(self) -> int:
        return int(self.recipe.run.epochs)

    def assignment(self, epoch: int) -> np.ndarray:
        """(N,) cluster id of every image at ``epoch``; -1 for images left out as unreadable."""
        path = RunDirectory(self.path).assignment_path(epoch)
        values = _load_array(path, f"the cluster assignment of epoch {epoch}")
        if values.shape != (len(self.dataset),):
            raise UserError(
                f"{path} holds {values.shape} values but the dataset of recipe.toml has "
                f"{len(self.dataset)} images; the data changed since the run (restore it)"
            )
        return values.astype(np.int64, copy=False)

    def distances(self, epoch: int) -> np.ndarray | None:
        """(N,) squared distance of every image to its centroid at ``epoch`` (NaN for images
        left out), or None for runs made before dcframe saved them."""
        path = self.path / "distances" / f"epoch_{epoch:04d}.npy"
        if not path.exists():
            return None
        values = _load_array(path, f"the centroid distances of epoch {epoch}")
        return values if values.shape == (len(self.dataset),) else None


def _load_array(path: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError) as error:
        raise UserError(
            f"cannot read {path}, {what} ({error}); restore it from a backup, or report "
            "another epoch with --epoch"
        ) from error


def load_run(path: Path) -> RunData:
    """Read a run directory: its recipe, finished epochs, dataset and evaluation results.

    Raises:
        UserError: the folder is missing, holds no run or no finished epoch yet, its recipe
            does not validate, or its dataset cannot be rebuilt.
    """
    if not path.exists():
        raise UserError(f"RUN_DIR {str(path)!r} does not exist; pass a run directory, {EXAMPLE}")
    recipe_file = path / "recipe.toml"
    if not path.is_dir() or not recipe_file.is_file():
        raise UserError(
            f"{str(path)!r} is not a run directory (it has no recipe.toml); pass a run "
            f"directory, {EXAMPLE}"
        )
    rundir, holder = RunDirectory(path), lock_holder(path)
    if holder is None:
        # A running run writes both files as it goes; a stopped one must have them agree.
        # Without a checkpoint there is nothing to disagree with: the records are reported.
        finished = rundir.finished_epochs()
        if finished is not None:
            rundir.check_records(finished)
        if warning := rundir.version_warning():
            Reporter().warn(warning)
    metrics = sorted(rundir.metrics(), key=lambda r: int(r["epoch"]))
    if not metrics:
        raise UserError(
            f"{str(path)!r} has no finished epoch yet (metrics.jsonl is empty); wait until "
            "epoch 0 ends, then run dcframe report again"
        )
    recipe = recipes.load(recipe_file)
    parts = build_components(recipe)
    return RunData(
        path=path,
        recipe=recipe,
        metrics=metrics,
        dataset=parts.dataset,
        backbone=parts.backbone,
        k=int(parts.clusterer.k),
        holder=holder,
        evals=find_evals(path / "eval"),
    )


def lock_holder(path: Path) -> str | None:
    """Who holds the run's lock, read from the lock file (whose content the holder clears
    when it ends; a killed run's stays, so a pid that is gone on this host is no holder)."""
    try:
        info = json.loads((path / LOCK_FILE).read_text(encoding="utf-8") or "null")
        pid, host, started = int(info["pid"]), str(info["host"]), str(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # it exists, under another user
    return f"pid {pid} on {host}, started {started}"


def find_evals(folder: Path) -> list[EvalResult]:
    """The results files of ``dcframe eval`` in ``folder``, ``<command>-<tag>-<hash>.json``
    (or ``<command>-<tag>.json`` from before results were kept apart); others skipped."""
    found = []
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            payload = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        command = payload.get("command") if isinstance(payload, dict) else None
        if not isinstance(command, str) or not isinstance(payload.get("results"), dict):
            continue
        # <command>-<tag>-<hash>.json records its tag; older <command>-<tag>.json files do not.
        tag = payload.get("tag")
        if not isinstance(tag, str):
            tag = file.stem.removeprefix(f"{command}-")
        model = payload.get("model")
        source = model.get("source") if isinstance(model, dict) else None
        found.append(EvalResult(command, tag, source == "random-init", payload))
    return found
