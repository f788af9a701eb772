"""The run directory: resolved recipe, versions, metrics, assignments and checkpoints.

Layout::

    <output_dir>/<name>/
        recipe.toml            the fully resolved recipe
        versions.json          python, dcframe, torch, faiss, ... and every plugin used
        metrics.jsonl          one JSON object per epoch
        assignments/epoch_0000.npy
        checkpoint.pt          latest state (model, body optimizer, epoch, RNG), written atomically
        checkpoints/epoch_0009.pt  weights kept every ``run.checkpoint_every`` epochs
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcframe.errors import UserError
from dcframe.registry import Origin

LIBRARIES = ("dcframe", "torch", "torchvision", "numpy", "scikit-learn", "pydantic")
FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss")


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


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write a file through a temporary sibling then rename it, so a crash never leaves
    a half-written file behind. ``write`` receives the open binary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDirectory:
    """Reads and writes everything a run leaves behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def assignment_path(self, epoch: int) -> Path:
        return self.path / "assignments" / f"epoch_{epoch:04d}.npy"

    def prepare(self) -> None:
        """Create the folders, failing clearly when the location is not writable."""
        try:
            (self.path / "assignments").mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"run.output_dir: cannot write to {str(self.path)!r} ({error.strerror}); "
                "choose another folder, e.g. --set run.output_dir=/tmp/runs"
            ) from error

    def write_text(self, name: str, text: str) -> None:
        atomic_write_bytes(self.path / name, lambda f: f.write(text.encode()))

    def save_assignment(self, epoch: int, assignment: np.ndarray) -> None:
        atomic_write_bytes(self.assignment_path(epoch), lambda f: np.save(f, assignment))

    def load_assignment(self, epoch: int) -> np.ndarray:
        return np.load(self.assignment_path(epoch))

    def save_checkpoint(self, state: dict[str, Any], keep_epoch: int | None = None) -> None:
        atomic_write_bytes(self.checkpoint_path, lambda f: torch.save(state, f))
        if keep_epoch is not None:
            folder = self.path / "checkpoints"
            folder.mkdir(exist_ok=True)
            weights = {k: state[k] for k in ("epoch", "model", "backbone", "k")}
            atomic_write_bytes(
                folder / f"epoch_{keep_epoch:04d}.pt", lambda f: torch.save(weights, f)
            )

    def load_checkpoint(self) -> dict[str, Any]:
        state: dict[str, Any] = torch.load(
            self.checkpoint_path, map_location="cpu", weights_only=True
        )
        return state

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the records of the first ``epochs`` epochs (a resumed run rewrites the rest)."""
        kept = [r for r in self.metrics() if r["epoch"] < epochs]
        self.write_text("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
