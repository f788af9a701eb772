"""A cache of decoded training images, so that from the second epoch on no JPEG is decoded.

The training view is random, so unlike the clustering view (:mod:`dcframe.data.view_cache`)
it cannot be cached: what is kept is each whole image as the batched view takes it
(:class:`~dcframe.data.batch_views.DecodedImage`: uint8 pixels at a capped size, and the
size it was decoded at, which its crop boxes are drawn in). Images differ in size, so the
pixels are appended to one file and an index gives each image's offset and shape.

The first training pass stores every image it decodes until the file reaches its budget
(the part of ``run.view_cache_gib`` the clustering view leaves); later passes read the
images it holds and decode only the others. Reading back gives exactly the pixels decoding
gave, so a run is the same with the cache, without it, or with a cache filled by an earlier
process of the run. The files are ``<run>/cache/training_images.<rank>.u8`` and
``.index.npy``; the index is written after the pixels it points to, and on opening, pixels
past the last saved index are cut off, so an interrupted run leaves a usable cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dcframe.core.files import atomic_write_bytes
from dcframe.data.batch_views import DecodedImage

# Columns of the index: byte offset (-1: not cached), stored height and width, and the
# width and height the image was decoded at.
OFFSET, STORED_H, STORED_W, WIDTH, HEIGHT = range(5)


class DecodedImageCache:
    """Decoded images of a dataset of ``num_images`` images, on disk, within ``budget`` bytes.

    Args:
        folder: Where the files live (created if missing).
        num_images: Images of the dataset (rows of the index).
        budget: Largest size of the pixel file in bytes; images past it are not stored.
        tag: Distinguishes the files of the processes of a distributed run.
    """

    def __init__(self, folder: Path, num_images: int, budget: int, tag: str = "0") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"training_images.{tag}.u8"
        self.index_path = folder / f"training_images.{tag}.index.npy"
        self.budget = budget
        self.index = np.full((num_images, 5), -1, dtype=np.int64)
        if self.index_path.exists():
            saved = np.load(self.index_path)
            if saved.shape == self.index.shape:
                self.index = saved
        held = self.index[:, OFFSET] >= 0
        end = int((self.index[held, OFFSET] + self._sizes(held)).max()) if held.any() else 0
        self.path.touch()
        self.file = self.path.open("r+b")  # kept open for the run's lifetime
        if self.file.seek(0, os.SEEK_END) < end:  # the pixels went missing: start afresh
            self.index[:] = -1
            end = 0
        self.file.truncate(end)  # pixels stored after the last saved index are not indexed
        self.end = end
        self.full = False

    def _sizes(self, rows: np.ndarray) -> np.ndarray:
        return self.index[rows, STORED_H] * self.index[rows, STORED_W] * 3

    def holds(self, images: Sequence[int]) -> bool:
        """Whether every one of the dataset's ``images`` is cached."""
        return bool((self.index[np.asarray(images, dtype=np.int64), OFFSET] >= 0).all())

    def read(self, images: Sequence[int]) -> list[DecodedImage]:
        """The cached ``images`` (all must be held), in order."""
        out = []
        fd = self.file.fileno()
        for image in images:
            offset, h, w, width, height = (int(v) for v in self.index[image])
            data = os.pread(fd, h * w * 3, offset)
            pixels = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(h, w, 3)
            out.append(DecodedImage(pixels, width, height))
        return out

    def store(self, images: Sequence[int], decoded: Sequence[DecodedImage]) -> None:
        """Append the ``decoded`` pixels of the dataset's ``images`` not yet held, while the
        budget lasts."""
        for image, item in zip(images, decoded, strict=True):
            if self.full or self.index[image, OFFSET] >= 0:
                continue
            pixels = item.pixels.cpu().contiguous().numpy()
            if self.end + pixels.nbytes > self.budget:
                self.full = True  # the rest of the images are decoded every epoch
                return
            os.pwrite(self.file.fileno(), pixels.tobytes(), self.end)
            h, w = pixels.shape[:2]
            self.index[image] = (self.end, h, w, item.width, item.height)
            self.end += pixels.nbytes

    def save(self) -> None:
        """Make what was stored so far count for the next run too (after a pass)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        atomic_write_bytes(self.index_path, lambda f: np.save(f, self.index))

    def close(self) -> None:
        self.file.close()
