"""What defines one epoch's clustering, saved so that its clusters can be listed and new
images placed in them: ``clusters/epoch_NNNN.npz``.

A clustering of epoch ``E`` is the trunk as it was when epoch ``E`` began (the weights that
embedded the images; epoch ``E``'s training pass comes after), the fitted state of every
preprocessing step, and, per head (``clusterer.k``, then each ``clusterer.extra_k``), the
centroids with the cluster and squared distance of every image of the run. The file also
holds the run's resolved recipe, so it is complete on its own: copied elsewhere, it still
places new images.

The format is numpy's ``.npz`` read with ``allow_pickle=False``: loading it runs no code.
Keys: ``meta`` (a JSON text: format, epoch, recipe, the steps whose state could not be
saved), ``trunk/<parameter>``, ``step/<i>/<array>``, ``head/<h>/centroids``,
``head/<h>/assignment`` and ``head/<h>/distances``.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes

FORMAT = 1
FOLDER = "clusters"


@dataclass(frozen=True)
class SavedHead:
    """One head's clustering.

    Attributes:
        centroids: (k, d) float32 centroids, in the preprocessed feature space.
        assignment: (N,) int64 cluster of every image of the run (-1: left out as unreadable).
        distances: (N,) float32 squared distance of every image to its centroid (NaN: left out).
    """

    centroids: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centroids)


@dataclass(frozen=True)
class SavedClustering:
    """Everything that defines one epoch's clustering (see the module docstring).

    Attributes:
        epoch: The epoch whose clustering this is.
        recipe: The run's resolved recipe (TOML text): which backbone, preprocessing and
            clusterer, with every parameter.
        trunk: The backbone's weights that embedded the images (no top layer).
        steps: Each preprocessing step's fitted arrays, in chain order; None for a step
            that could not save them (its reason is in ``missing``).
        heads: The clustering with ``clusterer.k``, then one per ``clusterer.extra_k``.
        missing: Why a part needed to place new images was not saved ("preprocess[1]
            (whiten-plugin) does not implement state_arrays()"); empty when all were.
    """

    epoch: int
    recipe: str
    trunk: dict[str, np.ndarray]
    steps: list[dict[str, np.ndarray] | None]
    heads: list[SavedHead]
    missing: tuple[str, ...] = ()


def path_of(run_dir: Path, epoch: int) -> Path:
    return run_dir / FOLDER / f"epoch_{epoch:04d}.npz"


def kept_epochs(run_dir: Path) -> list[int]:
    """The epochs whose clustering the run keeps, in order."""
    epochs = []
    for file in (run_dir / FOLDER).glob("epoch_*.npz"):
        number = file.stem.removeprefix("epoch_")
        if number.isdigit():
            epochs.append(int(number))
    return sorted(epochs)


def save(path: Path, clustering: SavedClustering) -> None:
    """Write ``clustering`` to ``path`` atomically."""
    meta = {
        "format": FORMAT,
        "epoch": clustering.epoch,
        "recipe": clustering.recipe,
        "steps": len(clustering.steps),
        "heads": len(clustering.heads),
        "missing": list(clustering.missing),
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    arrays |= {f"trunk/{name}": value for name, value in clustering.trunk.items()}
    for i, step in enumerate(clustering.steps):
        arrays |= {f"step/{i}/{name}": value for name, value in (step or {}).items()}
    for h, head in enumerate(clustering.heads):
        arrays[f"head/{h}/centroids"] = head.centroids
        arrays[f"head/{h}/assignment"] = head.assignment
        arrays[f"head/{h}/distances"] = head.distances
    packed = io.BytesIO()  # zip needs a seekable file; the atomic writer's is a stream
    np.savez(packed, **arrays)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda f: f.write(packed.getbuffer()))


def load(path: Path) -> SavedClustering:
    """The clustering saved in ``path``.

    Raises:
        UserError: the file is missing, damaged or not a dcframe clustering.
    """
    damaged = (
        f"{path} is not a clustering saved by dcframe (damaged or changed outside dcframe); "
        "restore it from a backup"
    )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{damaged} (format {meta.get('format')!r}, expected {FORMAT})")
        return _unpacked(meta, arrays)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{damaged} ({type(error).__name__}: {error})") from error


def _unpacked(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SavedClustering:
    def under(prefix: str) -> dict[str, np.ndarray]:
        return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}

    missing = tuple(str(reason) for reason in meta["missing"])
    steps: list[dict[str, np.ndarray] | None] = []
    for i in range(int(meta["steps"])):
        state = under(f"step/{i}/")
        unsaved = any(reason.startswith(f"preprocess[{i}]") for reason in missing)
        steps.append(None if unsaved else state)
    heads = [
        SavedHead(
            arrays[f"head/{h}/centroids"],
            arrays[f"head/{h}/assignment"],
            arrays[f"head/{h}/distances"],
        )
        for h in range(int(meta["heads"]))
    ]
    return SavedClustering(
        int(meta["epoch"]), str(meta["recipe"]), under("trunk/"), steps, heads, missing
    )
