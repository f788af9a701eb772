"""What the file-based datasets share: images named by paths, decoded on demand (at a
reduced scale when allowed), with optional labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dcframe.core.errors import BadImageError
from dcframe.core.interfaces import Dataset
from dcframe.data.images import open_rgb

JPEG_SUFFIXES = (".jpg", ".jpeg")


class ImageFiles(Dataset):
    """A dataset of ``paths``, one image each; a subclass fills them in with :meth:`_hold`.

    The subclass's parameters have ``reduced_decoding``: it lets a JPEG be decoded at the
    smallest scale the run uses (:meth:`decode_at_least`).
    """

    params: Any
    paths: list[str]

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self._min_side: int | None = None
        self._labels: np.ndarray | None = None
        self._class_names: list[str] | None = None

    def _hold(
        self, paths: list[str], labels: np.ndarray | None, class_names: list[str] | None
    ) -> None:
        self.paths, self._labels, self._class_names = paths, labels, class_names

    def decode_at_least(self, side: int) -> None:
        if self.params.reduced_decoding:
            self._min_side = side

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` in 8-bit RGB; raises :class:`~dcframe.core.errors.BadImageError`."""
        return open_rgb(self.paths[index], self._min_side)

    def image_id(self, index: int) -> str:
        return self.paths[index]

    def image_file(self, index: int) -> str | None:
        return self.paths[index]

    def encoded(self, index: int) -> tuple[bytes, str] | None:
        name = self.paths[index]
        return (self._bytes(index), name) if name.lower().endswith(JPEG_SUFFIXES) else None

    def _bytes(self, index: int) -> bytes:
        """The file of image ``index``; raises :class:`~dcframe.core.errors.BadImageError`."""
        try:
            return Path(self.paths[index]).read_bytes()
        except OSError as error:
            raise BadImageError(self.paths[index], str(error.strerror or error)) from error

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels

    @property
    def class_names(self) -> list[str] | None:
        return self._class_names
