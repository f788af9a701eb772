"""What a run does with images that cannot be read: the recipe's ``data.on_bad_image`` policy.

Loaders of a run never let a dataset's "cannot read" error escape a worker process (where
it would arrive wrapped in the worker's traceback): :class:`MarkUnreadable` turns it into
an :class:`Unreadable` marker, :func:`collate_readable` batches the readable images and
hands the markers on, and :class:`BadImagePolicy` decides in the main process:

* ``fail`` (default): stop at the first unreadable image, naming it;
* ``skip``: leave it out of every pass from then on, warn once, list it in the run
  directory, and stop when more than ``data.max_bad_fraction`` of the images are bad.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import default_collate

from dcframe.core.errors import BadImageError, UserError
from dcframe.core.progress import Reporter


@dataclass(frozen=True)
class Unreadable:
    """Image ``index`` of the dataset could not be read."""

    index: int
    path: str
    reason: str


def unreadable_tsv(rows: Iterable[tuple[int, str, str]]) -> str:
    """(index, path, reason) rows as the tab-separated list a run leaves in
    ``skipped_images.tsv`` and ``dcframe data check --out`` writes; one line per image."""

    def cell(text: str) -> str:
        return " ".join(text.split())  # no tab or newline may split a row

    lines = [f"{index}\t{cell(path)}\t{cell(reason)}\n" for index, path, reason in rows]
    return "index\tpath\treason\n" + "".join(lines)


class MarkUnreadable(TorchDataset[Any]):
    """``base[i]``, or an :class:`Unreadable` marker when the dataset cannot read that image.

    Args:
        base: A dataset of (image, target) pairs whose ``dataset_index(i)`` names the image
            item ``i`` is (an :class:`~dcframe.evaluation.data.ImageSubset`, or the run's
            :class:`~dcframe.data.loading.ViewedImages`).
    """

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.base[i]
        except BadImageError as error:
            return Unreadable(self.base.dataset_index(i), error.path, error.reason)
        except UserError as error:  # a dataset that names the problem in its own words
            index = self.base.dataset_index(i)
            return Unreadable(index, f"image {index}", str(error))


def collate_readable(
    items: list[Any],
) -> tuple[Any, torch.Tensor | list[torch.Tensor] | None, list[Unreadable]]:
    """Batch the readable (image, target) pairs; the unreadable ones come back as markers.
    Image tensors are stacked (tuples of views, view by view); other images (whole decoded
    images of different sizes, JPEG bytes) come back as a list. Targets of several heads
    (tuples) come back as one tensor per head."""
    unreadable = [item for item in items if isinstance(item, Unreadable)]
    readable = [item for item in items if not isinstance(item, Unreadable)]
    if not readable:
        return None, None, unreadable
    images = [image for image, _ in readable]
    targets = default_collate([target for _, target in readable])
    # a tensor per image, or a tuple of views (multi-crop): one stacked tensor per view
    batched = isinstance(images[0], torch.Tensor | tuple)
    stacked = default_collate(images) if batched else images
    return stacked, targets, unreadable


@dataclass
class BadImagePolicy:
    """The run's bad-image policy and the images it has left out so far.

    Attributes:
        on_bad_image: "fail" or "skip".
        max_bad_fraction: Largest tolerated fraction of unreadable images under "skip".
        num_images: Size of the dataset.
        skipped: Dataset index -> (path, reason) of every image left out.
        reporter: Where the warnings go.
        how_to_skip: The advice that ends the "fail" message: how to skip instead.
    """

    on_bad_image: Literal["fail", "skip"] = "fail"
    max_bad_fraction: float = 0.0
    num_images: int = 0
    skipped: dict[int, tuple[str, str]] = field(default_factory=dict)
    reporter: Reporter = field(default_factory=lambda: Reporter(quiet=True))
    how_to_skip: str = (
        'set data.on_bad_image = "skip" to leave unreadable images out '
        "(`dcframe data check RECIPE` lists them all)"
    )

    def check(self, unreadable: list[Unreadable]) -> None:
        """Apply the policy to the unreadable images of one batch.

        Raises:
            UserError: under "fail", for the first one; under "skip", when too many are bad.
        """
        if not unreadable:
            return
        first = unreadable[0]
        if self.on_bad_image == "fail":
            raise UserError(
                f"cannot read image {first.path!r} ({first.reason}); remove or "
                f"replace the file, or {self.how_to_skip}"
            )
        for bad in unreadable:
            if bad.index not in self.skipped:
                self.skipped[bad.index] = (bad.path, bad.reason)
                self.reporter.warn(f"skipping unreadable image {bad.path!r} ({bad.reason})")
        limit = self.max_bad_fraction * self.num_images
        if len(self.skipped) > limit:
            examples = ", ".join(repr(path) for path, _ in list(self.skipped.values())[:3])
            raise UserError(
                f"{len(self.skipped)} of {self.num_images} images are unreadable (e.g. "
                f"{examples}), more than data.max_bad_fraction = {self.max_bad_fraction:g} "
                "allows; fix them (`dcframe data check RECIPE` lists them all) or raise "
                "data.max_bad_fraction"
            )

    def readable(self, indices: np.ndarray) -> np.ndarray:
        """``indices`` without the images already left out, in the same order."""
        if not self.skipped:
            return indices
        return indices[~np.isin(indices, list(self.skipped))]

    def readable_mask(self) -> np.ndarray | None:
        """Boolean mask of the readable images, or None when none was left out."""
        if not self.skipped:
            return None
        mask = np.ones(self.num_images, dtype=bool)
        mask[list(self.skipped)] = False
        return mask
