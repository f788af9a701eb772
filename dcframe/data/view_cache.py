"""A cache of the clustering view: every image resized and centre-cropped, as uint8 pixels in a
memory-mapped file (``run.view_cache_gib``).

The clustering view never changes from one epoch to the next, yet without a cache every
epoch decodes every file again. With it, the first extraction pass stores each image's
pixels as it decodes them, and later passes read them back in batches: extraction then costs
about the forward pass alone. Normalisation happens on the batch with the same operations
as on a single image, so a cached run gives bit-identical features.

The file is ``<run>/cache/clustering_view_<size>px.<rank>.u8`` (one per process of a
distributed run, each filling the images it embeds), with a ``.filled.npy`` beside it
saying which rows hold an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcframe.core.files import atomic_write_bytes

GIB = 2**30


class ClusteringViewCache:
    """The clustering view of ``num_images`` images of ``size`` x ``size`` pixels, on disk.

    Args:
        folder: Where the file lives (created if missing).
        num_images: Rows of the cache, one per image of the dataset.
        size: Side of the square view (the backbone's input size).
        tag: Distinguishes the files of the processes of a distributed run.
    """

    def __init__(self, folder: Path, num_images: int, size: int, tag: str = "0") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"clustering_view_{size}px.{tag}.u8"
        self.filled_path = self.path.with_suffix(".filled.npy")
        shape = (num_images, size, size, 3)
        reuse = self.path.exists() and self.path.stat().st_size == self.bytes_needed(
            num_images, size
        )
        self.pixels = np.memmap(
            self.path, dtype=np.uint8, mode="r+" if reuse else "w+", shape=shape
        )
        self.filled = np.zeros(num_images, dtype=bool)
        if reuse and self.filled_path.exists():
            saved = np.load(self.filled_path)
            if saved.shape == self.filled.shape:
                self.filled = saved

    @staticmethod
    def bytes_needed(num_images: int, size: int) -> int:
        return num_images * size * size * 3

    def store(self, index: np.ndarray, pixels: np.ndarray) -> None:
        """Keep the (B, size, size, 3) uint8 ``pixels`` of images ``index``."""
        self.pixels[index] = pixels
        self.filled[index] = True

    def save(self) -> None:
        """Make what was stored so far count for the next run too (after a pass)."""
        self.pixels.flush()
        atomic_write_bytes(self.filled_path, lambda f: np.save(f, self.filled))
