"""The run directory: resolved recipe, versions, metrics, assignments and checkpoints.

Layout::

    <output_dir>/<name>/
        recipe.toml            the fully resolved recipe
        versions.json          python, dcframe, torch, faiss, ... and every plugin used at the
                               start, and under ``resumes`` those of each resume since
        metrics.jsonl          one JSON object per epoch
        assignments/epoch_0000.npy
        distances/epoch_0000.npy  each image's squared distance to its centroid (the report's
                               galleries show the closest first; NaN: left out as unreadable)
        clusters/epoch_0000.npz   what defines the latest epoch's clustering (and every
                               ``run.keep_clusters_every``-th): trunk, preprocessing, centroids
                               (:mod:`dcframe.store.clusterings`)
        checkpoint.pt          latest state (model, body optimizer, epoch, RNG), written atomically
        checkpoints/epoch_0009.pt  weights kept every ``run.checkpoint_every`` epochs
        skipped_images.tsv     unreadable images left out (``data.on_bad_image = "skip"``)
        .lock                  held by the run using the folder (see :mod:`dcframe.store.lock`)

A folder "holds a run" once its first epoch is finished, i.e. once ``checkpoint.pt`` exists.
A folder without one (a run that failed or was killed during epoch 0) is simply started
again. Every file is written atomically (:mod:`dcframe.core.files`).

``metrics.jsonl`` and ``checkpoint.pt`` agree when the records are those of epochs 0 to n-1,
each once, and n is the checkpoint's finished epochs or one more: an epoch's record is
written before its checkpoint, so a kill between the two leaves the record of the epoch
the resume redoes (and rewrites). Anything else means a file was changed outside dcframe
and is refused (:meth:`RunDirectory.check_records`), since resuming would rewrite history.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes, remove_temporaries
from dcframe.core.metrics_file import MetricsFile
from dcframe.core.registry import Origin
from dcframe.data.bad_images import unreadable_tsv
from dcframe.recipe import dumps, validate
from dcframe.store import clusterings
from dcframe.store.checkpoint_file import read_checkpoint
from dcframe.store.lock import locked

LIBRARIES = ("dcframe", "torch", "torchvision", "numpy", "scikit-learn", "pydantic")
FAISS_DISTRIBUTIONS = (
    "faiss-cpu",
    "faiss-gpu",
    "faiss-gpu-cuvs",
    "faiss-gpu-cu12",
    "faiss-gpu-cu11",
    "faiss",
)


def _version_of(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def versions(plugins: list[Origin]) -> dict[str, Any]:
    """Versions of Python, the libraries that shape results, faiss and the plugins used."""
    faiss = {d: v for d in FAISS_DISTRIBUTIONS if (v := _version_of(d))}
    return {
        "python": platform.python_version(),
        **{lib: _version_of(lib) for lib in LIBRARIES},
        "faiss": faiss or None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "plugins": {o.distribution: o.version for o in plugins if not o.builtin},
    }


# The versions whose change may change a run's numbers (python and pydantic do not).
COMPARED_VERSIONS = ("dcframe", "torch", "torchvision", "numpy", "scikit-learn")
VERSIONS_FILE = "versions.json"
RESUMES = "resumes"


def versions_now(started: dict[str, Any]) -> dict[str, Any]:
    """The versions of this process, for the plugins of a run started with ``started``
    (the recipe cannot change on resume, so neither can the plugins it uses)."""
    plugins = started.get("plugins")
    names = list(plugins) if isinstance(plugins, dict) else []
    return {**versions([]), "plugins": {name: _version_of(name) for name in names}}


def version_changes(started: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Each library, faiss build or plugin that differs, as "torch 2.1.0 -> 2.4.1"."""
    before, after = _comparable(started), _comparable(now)
    return [
        f"{name} {before.get(name) or 'none'} -> {after.get(name) or 'none'}"
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    ]


def _comparable(recorded: dict[str, Any]) -> dict[str, Any]:
    """The versions of ``recorded`` that shape results, one level deep (faiss builds and
    plugins by distribution)."""
    flat = {name: recorded.get(name) for name in COMPARED_VERSIONS}
    for group, prefix in (("faiss", ""), ("plugins", "plugin ")):
        values = recorded.get(group)
        flat |= {f"{prefix}{k}": v for k, v in (values if isinstance(values, dict) else {}).items()}
    return flat


# What a resumed run may change: the length of the run, where its folder is (a run moved to
# another disk) and how many loader processes it uses; nothing that changes the results.
RESUME_MAY_CHANGE = (
    "epochs",
    "keep_clusters_every",
    "name",
    "output_dir",
    "workers",
    "checkpoint_every_steps",
    "collective_timeout",
    "view_cache_gib",
    "knn_k",
    "knn_queries",
)
# Sections a resumed run may change as a whole: where the metrics are logged.
RESUME_MAY_CHANGE_SECTIONS = ("loggers",)
CHECKPOINT_KEYS = ("epoch", "backbone", "k", "model", "body_optimizer", "rng")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _epochs(count: int) -> str:
    return f"{count} finished epoch{'' if count == 1 else 's'}"


def _restore(name: str) -> str:
    return f"restore {name} from a backup, or start a new run with --set run.name=<new-name>"


def _with_current_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved recipe with the defaults of fields added to dcframe since it was written, so
    that an upgrade alone does not make ``--resume`` refuse an old run as "different"; as
    saved if it no longer validates (the comparison then names the difference)."""
    try:
        return tomllib.loads(dumps(validate(saved)))
    except UserError:
        return saved


# The last epoch's metrics a RunDirectory's repr shows, when recorded.
REPR_METRICS = ("nmi_vs_labels", "knn_accuracy", "train_loss")


def _progress(path: Path) -> str:
    """What the repr says of the run in ``path`` after its path: ``, 8/8 epochs, last:
    nmi_vs_labels=0.61, knn_accuracy=0.93, train_loss=1.23`` (what is known of it), or
    nothing for a folder without a record or recipe; raises when a file cannot be read."""
    records = MetricsFile(path).records()
    recipe_file = path / "recipe.toml"
    planned = None
    if recipe_file.is_file():
        run = tomllib.loads(recipe_file.read_text(encoding="utf-8")).get("run", {})
        planned = run.get("epochs") if isinstance(run, dict) else None
    if not records and not _is_count(planned):
        return ""  # not (yet) a run folder: its path says it all
    parts = [f"{len(records)}/{planned if _is_count(planned) else '?'} epochs"]
    last = records[-1] if records else {}
    shown = [
        f"{name}={value:.3g}"
        for name in REPR_METRICS
        if isinstance(value := last.get(name), int | float) and not isinstance(value, bool)
    ]
    if shown:
        parts.append(f"last: {', '.join(shown)}")
    return "".join(f", {part}" for part in parts)


class RunDirectory:
    """Reads and writes everything a run leaves behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        """``RunDirectory('runs/quickstart', 8/8 epochs, last: nmi_vs_labels=0.61, ...)``:
        read from metrics.jsonl and recipe.toml only, and never failing (the path alone)."""
        try:
            return f"RunDirectory({str(self.path)!r}{_progress(self.path)})"
        except Exception:  # a repr must not raise, whatever the folder holds
            return f"RunDirectory({str(self.path)!r})"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return MetricsFile(self.path).path

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def skipped_path(self) -> Path:
        return self.path / "skipped_images.tsv"

    def assignment_path(self, epoch: int) -> Path:
        return self.path / "assignments" / f"epoch_{epoch:04d}.npy"

    def distances_path(self, epoch: int) -> Path:
        return self.path / "distances" / f"epoch_{epoch:04d}.npy"

    def clustering_path(self, epoch: int) -> Path:
        return clusterings.path_of(self.path, epoch)

    @property
    def holds_finished_epoch(self) -> bool:
        return self.checkpoint_path.exists()

    # ----------------------------------------------------------------- opening

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        """Create the folder and hold its lock; temporaries of killed writers are cleared.

        Raises:
            UserError: the folder cannot be created or written (permissions, full disk,
                a path too long), or another run holds it.
        """
        try:
            for folder in ("assignments", "distances"):
                (self.path / folder).mkdir(parents=True, exist_ok=True)
            # One probe per process: two runs racing for one folder must each get to the
            # lock (and its clear message), not trip over the other's probe.
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"run.output_dir: cannot write to {str(self.path)!r} "
                f"({error.strerror or error}); choose another folder, e.g. "
                "--set run.output_dir=/tmp/runs"
            ) from error
        with locked(self.path):
            remove_temporaries(
                self.path,
                *(self.path / f for f in ("assignments", "distances", "checkpoints", "cache")),
                self.path / clusterings.FOLDER,
            )
            yield

    def start(self, resolved: str, resume: bool) -> dict[str, Any] | None:
        """Check the folder against the request; the saved state to resume from, or None.

        A folder without a finished epoch is started afresh, with or without ``--resume``:
        there is nothing in it to keep. Call inside :meth:`open`.

        Raises:
            UserError: a plain run on a folder that holds a run; ``--resume`` on a folder
                without any run, with another recipe, or with damaged files.
        """
        if not self.holds_finished_epoch:
            if resume and not self.recipe_path.exists():
                raise UserError(f"--resume: no run in {str(self.path)!r}; start without --resume")
            self.check_records(None)  # records of more than epoch 0: checkpoint.pt was removed
            self._clear_unfinished()
            return None
        if not resume:
            raise UserError(
                f"run directory {str(self.path)!r} already holds a run; continue it with "
                "--resume, or pick another name, e.g. --set run.name=<new-name>"
            )
        self._check_same_recipe(resolved)
        state = self.load_checkpoint()
        try:
            self.check_records(state["epoch"])
        except UserError as error:
            raise UserError(f"--resume: {error}") from error
        return state

    def _clear_unfinished(self) -> None:
        """Remove what a run that never finished an epoch left (it would only mislead)."""
        clusters = self.path.glob(f"{clusterings.FOLDER}/*")
        for stale in (
            self.metrics_path,
            self.skipped_path,
            *self.path.glob("assignments/*"),
            *clusters,
        ):
            stale.unlink(missing_ok=True)

    def _check_same_recipe(self, resolved: str) -> None:
        if not self.recipe_path.is_file():
            raise UserError(
                f"--resume: {self.recipe_path} is missing, so the run's recipe cannot be checked; "
                "restore it from a backup, or start a new run with --set run.name=<new-name>"
            )
        try:
            saved = tomllib.loads(self.recipe_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise UserError(
                f"--resume: {self.recipe_path} is damaged ({error}); restore it from a backup "
                "or start a new run with --set run.name=<new-name>"
            ) from error
        saved = _with_current_defaults(saved)
        wanted = tomllib.loads(resolved)
        for recipe in (saved, wanted):
            if isinstance(recipe.get("run"), dict):
                for key in RESUME_MAY_CHANGE:
                    recipe["run"].pop(key, None)
            for section in RESUME_MAY_CHANGE_SECTIONS:
                recipe.pop(section, None)
        if saved != wanted:
            may = ", ".join(
                [f"run.{key}" for key in RESUME_MAY_CHANGE]
                + [f"[[{section}]]" for section in RESUME_MAY_CHANGE_SECTIONS]
            )
            raise UserError(
                f"--resume: the recipe differs from the one saved in {self.recipe_path} "
                f"(only {may} may change when resuming); compare them with "
                "`dcframe recipe show`"
            )

    # ----------------------------------------------------------------- writing

    def write_text(self, name: str, text: str) -> None:
        atomic_write_bytes(self.path / name, lambda f: f.write(text.encode()))

    def save_assignment(self, epoch: int, assignment: np.ndarray) -> None:
        atomic_write_bytes(self.assignment_path(epoch), lambda f: np.save(f, assignment))

    def save_distances(self, epoch: int, distances: np.ndarray) -> None:
        atomic_write_bytes(self.distances_path(epoch), lambda f: np.save(f, distances))

    def save_clustering(self, clustering: clusterings.SavedClustering) -> None:
        clusterings.save(self.clustering_path(clustering.epoch), clustering)

    def drop_clustering(self, epoch: int) -> None:
        """Remove epoch ``epoch``'s clustering (a later one replaces it)."""
        self.clustering_path(epoch).unlink(missing_ok=True)

    def save_checkpoint(self, state: dict[str, Any], keep_epoch: int | None = None) -> None:
        atomic_write_bytes(self.checkpoint_path, lambda f: torch.save(state, f))
        if keep_epoch is not None:
            folder = self.path / "checkpoints"
            folder.mkdir(exist_ok=True)
            weights = {k: state[k] for k in ("epoch", "model", "backbone", "k")}
            atomic_write_bytes(
                folder / f"epoch_{keep_epoch:04d}.pt", lambda f: torch.save(weights, f)
            )

    def save_skipped(self, skipped: dict[int, tuple[str, str]]) -> None:
        """The images left out as unreadable: index, path and reason, one per line."""
        rows = ((i, path, reason) for i, (path, reason) in sorted(skipped.items()))
        self.write_text(self.skipped_path.name, unreadable_tsv(rows))

    # ----------------------------------------------------------------- reading

    def load_checkpoint(self) -> dict[str, Any]:
        """The latest state, checked to be a dcframe checkpoint.

        Raises:
            UserError: the file is unreadable, damaged, or not a dcframe run checkpoint.
        """
        redo = (
            "dcframe writes it atomically, so it was changed outside dcframe: restore it from "
            "a backup, or start a new run with --set run.name=<new-name>"
        )
        try:
            state = read_checkpoint(self.checkpoint_path)
        except UserError as error:
            raise UserError(f"--resume: {error}; {redo}") from error
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise UserError(
                f"--resume: {self.checkpoint_path} is not a dcframe run checkpoint (missing "
                f"{', '.join(missing)}); {redo}"
            )
        if not _is_count(state["epoch"]):
            raise UserError(
                f"--resume: {self.checkpoint_path}: 'epoch' must be a count of epochs; "
                f"found {state['epoch']!r}; {redo}"
            )
        return dict(state)

    def finished_epochs(self) -> int | None:
        """The epochs ``checkpoint.pt`` has finished, None without one; only its small
        entries are read (the tensors are mapped, not loaded).

        Raises:
            UserError: the checkpoint is damaged or has no count of epochs.
        """
        if not self.holds_finished_epoch:
            return None
        state = read_checkpoint(self.checkpoint_path, mmap=True)
        epoch = state.get("epoch") if isinstance(state, dict) else None
        if not _is_count(epoch):
            raise UserError(
                f"{self.checkpoint_path} is not a dcframe run checkpoint (no count of finished "
                "epochs); restore it from a backup"
            )
        return int(epoch)  # type: ignore[arg-type]  # checked by _is_count

    def check_records(self, finished: int | None) -> None:
        """Refuse a ``metrics.jsonl`` that disagrees with the checkpoint's ``finished``
        epochs (None: no checkpoint); see the module docstring for the rule.

        Raises:
            UserError: records not of epochs 0, 1, ... each once, or one of the two files
                behind the other, named with what to do.
        """
        epochs = [record["epoch"] for record in self.metrics()]
        metrics, checkpoint = self.metrics_path, self.checkpoint_path
        if epochs != list(range(len(epochs))):
            raise UserError(
                f"{metrics} records epochs {', '.join(map(str, epochs))}, not each epoch from 0 "
                f"once: it was changed outside dcframe; {_restore(metrics.name)}"
            )
        recorded, holds = len(epochs), finished or 0
        if holds <= recorded <= holds + 1:
            return  # one more: killed between an epoch's record and its checkpoint
        behind = metrics if recorded < holds else checkpoint
        has = f"holds {_epochs(holds)}" if finished is not None else "is missing"
        raise UserError(
            f"{checkpoint} {has} but {metrics} records {_epochs(recorded)}: {behind.name} is "
            f"behind (emptied, cut, removed or replaced by an older copy); {_restore(behind.name)} "
            "(resuming would rewrite the run's history)"
        )

    def load_assignment(self, epoch: int) -> np.ndarray:
        path = self.assignment_path(epoch)
        try:
            labels = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise UserError(
                f"--resume: cannot read {path} ({error}); it is needed to measure "
                "NMI(t-1,t); restore it, or start a new run with --set run.name=<new-name>"
            ) from error
        return np.asarray(labels)

    def load_skipped(self) -> dict[int, tuple[str, str]]:
        """The images earlier epochs left out (empty when none were)."""
        if not self.skipped_path.exists():
            return {}
        skipped = {}
        for line in self.skipped_path.read_text(encoding="utf-8").splitlines()[1:]:
            index, path, reason = [*line.split("\t", 2), "", ""][:3]
            if index.isdigit():
                skipped[int(index)] = (path, reason)
        return skipped

    # ----------------------------------------------------------------- versions

    def recorded_versions(self) -> dict[str, Any] | None:
        """``versions.json``: the versions the run started with, and under ``resumes`` each
        resume's (absent from runs of older dcframe versions); None if missing or damaged."""
        try:
            recorded = json.loads((self.path / VERSIONS_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return recorded if isinstance(recorded, dict) else None

    def record_resume(self, epoch: int) -> str | None:
        """Append this process's versions to ``versions.json`` as a resume at ``epoch``.

        Returns:
            A warning naming the versions that differ from the start's, or saying why none
            could be recorded; None when they are the same.
        """
        recorded = self.recorded_versions()
        if recorded is None:
            return f"{self.path / VERSIONS_FILE} is missing or damaged; versions not recorded"
        now = versions_now(recorded)
        time = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        resumes = recorded.get(RESUMES)
        history = [
            *(resumes if isinstance(resumes, list) else []),
            {"time": time, "epoch": epoch, **now},
        ]
        self.write_text(VERSIONS_FILE, json.dumps({**recorded, RESUMES: history}, indent=2) + "\n")
        meaning = "the resumed epochs may not be bit-identical to an uninterrupted run's"
        return self._versions_differ(recorded, now, "was started", meaning)

    def version_warning(self) -> str | None:
        """A warning when this process's versions differ from those that last trained the run
        (its start, or its latest resume, which warned about its own differences)."""
        recorded = self.recorded_versions()
        if recorded is None:
            return None
        resumes = recorded.get(RESUMES)
        last = resumes[-1] if isinstance(resumes, list) and resumes else recorded
        meaning = "a resume with these versions may not continue it bit-identically"
        return self._versions_differ(last, versions_now(recorded), "was last trained", meaning)

    def _versions_differ(
        self, then: dict[str, Any], now: dict[str, Any], when: str, meaning: str
    ) -> str | None:
        changes = version_changes(then, now) if isinstance(then, dict) else []
        if not changes:
            return None
        return (
            f"{self.path} {when} with other versions than this process has "
            f"({'; '.join(changes)}): {meaning} (versions.json keeps each resume's versions)"
        )

    def metrics(self) -> list[dict[str, Any]]:
        """The epoch records of ``metrics.jsonl`` (see :meth:`MetricsFile.records`)."""
        return MetricsFile(self.path).records()
