"""One DataLoader for the whole run: its worker processes start once and serve every pass.

Rebuilding a DataLoader for each pass forks its workers again (and re-imports nothing, but
copies the process and warms up anew) two or three times an epoch. Here the workers hold
the dataset and the run's views once; each pass only sends them the items it wants, as
keys ``(view, dataset index, target, seed)`` through a batch sampler whose plan changes
from pass to pass. With ``workers = 0`` the same loader decodes in the calling process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from dcframe.core.interfaces import Dataset
from dcframe.core.stop_signals import leave_stops_to_the_run
from dcframe.data.bad_images import MarkUnreadable, collate_readable
from dcframe.data.batch_views import DecodedPixels
from dcframe.data.device_decode import JpegBytes
from dcframe.data.multi_crop import MultiCropView, smallest_side_for
from dcframe.data.transforms import PixelsOfClusteringView, TrainingView, clustering_transform

#: Batches each worker prepares ahead of the one being consumed.
PREFETCH_PER_WORKER = 4

# The views of a run: the training augmentation, the deterministic clustering view, and
# the same view as uint8 pixels (what the view cache stores).
TRAINING, CLUSTERING, CLUSTERING_PIXELS = "training", "clustering", "clustering-pixels"
# What the batched training view starts from (run.augment_on = "device"): decoded whole
# images, or JPEG bytes for decoding on the device (run.jpeg_decode = "device").
DECODED, JPEG_BYTES = "decoded", "jpeg-bytes"


def run_views(input_size: int, training: TrainingView | MultiCropView) -> dict[str, Any]:
    """Every view a run's passes ask for, by name: a callable of the decoded image (and
    the seed, for a random view), or an object whose ``read(dataset, index)`` reads the
    image itself."""
    decoded = DecodedPixels(smallest_side_for(training))
    return {
        TRAINING: training,
        CLUSTERING: clustering_transform(input_size),
        CLUSTERING_PIXELS: PixelsOfClusteringView(input_size),
        DECODED: decoded,
        JPEG_BYTES: JpegBytes(decoded),
    }


# An image's pseudo-label, or one per head.
Target = int | tuple[int, ...]


class Item(NamedTuple):
    """One image a pass asks for: ``view`` of dataset image ``image``, paired with
    ``target`` (one per head with ``clusterer.extra_k``, batched as one tensor per head);
    ``seed`` >= 0 makes a random view draw from that seed alone."""

    view: str
    image: int
    target: Target
    seed: int = -1


class ViewedImages(TorchDataset[tuple[Any, Target]]):
    """The images of a dataset under the run's named views, asked for by :class:`Item`."""

    def __init__(self, dataset: Dataset, views: dict[str, Any]) -> None:
        self.dataset = dataset
        self.views = views

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Item) -> tuple[Any, Target]:
        view = self.views[item.view]
        if hasattr(view, "read"):  # reads the dataset its own way (JPEG bytes)
            return view.read(self.dataset, item.image), item.target
        image = self.dataset.image(item.image)
        pixels = view(image) if item.seed < 0 else view(image, item.seed)
        return pixels, item.target

    def dataset_index(self, item: Item) -> int:
        return item.image


class _Plan(Sampler[list[Item]]):
    """The batches of the pass under way; replaced before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []

    def __iter__(self) -> Iterator[list[Item]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class RunLoader:
    """Batches of ``(images, targets, unreadable)`` for every pass of a run.

    An image the dataset cannot read becomes an entry of ``unreadable`` instead of an
    exception (see :mod:`dcframe.data.bad_images`); ``images`` is None when no image of a batch
    was readable. The loader has a generator of its own, so iterating it never advances the
    process's random stream (which dropout draws from, and which a checkpoint restores).
    """

    def __init__(
        self,
        dataset: Dataset,
        views: dict[str, Any],
        workers: int,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.workers = workers
        self._plan = _Plan()
        self._loader: DataLoader[Any] = DataLoader(
            MarkUnreadable(ViewedImages(dataset, views)),
            batch_sampler=self._plan,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=PREFETCH_PER_WORKER if workers else None,
            pin_memory=pin_memory,
            collate_fn=collate_readable,
            generator=torch.Generator().manual_seed(0),
            worker_init_fn=leave_stops_to_the_run,
        )

    def close(self) -> None:
        """Stop the workers now rather than at garbage collection: forked from the run, they
        hold its open files, the run lock among them, and an exception's traceback can keep
        the loader alive long after the run has failed."""
        iterator = getattr(self._loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # what DataLoader's own finaliser calls
            # Workers ignore SIGTERM (the run handles stops), so torch's last resort,
            # terminate(), cannot end one stuck in a read: kill it.
            for worker in getattr(iterator, "_workers", []):
                if worker.is_alive():
                    worker.kill()
        self._loader._iterator = None

    def load(self, batches: Sequence[Sequence[Item]]) -> DataLoader[Any]:
        """The loader, set to yield ``batches``; iterate it once before the next call."""
        self._plan.batches = [list(batch) for batch in batches]
        return self._loader

    def views_of(self, view: str, indices: np.ndarray, batch_size: int) -> DataLoader[Any]:
        """``view`` of images ``indices`` in consecutive batches, each targeted with its
        own dataset index (so that rows can be put back in place)."""
        items = [Item(view, int(i), int(i)) for i in indices]
        return self.load([items[s : s + batch_size] for s in range(0, len(items), batch_size)])
