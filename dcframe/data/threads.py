"""A dataset read from several threads: each thread through its own shallow copy, and the
name an image goes by in what such a reader reports.

Decoding in a pool of threads uses every core (PIL releases the GIL while it decodes), but
a dataset may keep open files between reads (the ``webdataset`` dataset keeps one per
shard, and seeks in it): two threads seeking one handle read each other's bytes, and
sound images are then reported as corrupt. A shallow copy per thread shares the dataset's
arrays and gets its own open files (``copy.copy`` goes through ``__getstate__``, where a
dataset drops its handles, as it does for DataLoader worker processes).
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the interfaces import torch; the command line imports this module early
    from dcframe.core.interfaces import Dataset


class DatasetPerThread:
    """``get()`` gives the calling thread its own copy of ``dataset``, made on first use."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._local = threading.local()

    def get(self) -> Dataset:
        mine: Dataset | None = getattr(self._local, "dataset", None)
        if mine is None:
            mine = self._local.dataset = copy.copy(self.dataset)
        return mine


def image_name(dataset: Dataset, index: int) -> str:
    """The file behind image ``index`` where the dataset says (``paths``), else its index."""
    paths = getattr(dataset, "paths", None)
    try:
        return str(paths[index]) if paths is not None else f"image #{index}"
    except (TypeError, IndexError, KeyError):
        return f"image #{index}"
