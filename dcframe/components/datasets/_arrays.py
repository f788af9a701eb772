"""What the in-memory datasets share: every image a uint8 array already decoded, every
image labelled."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dcframe.core.interfaces import Dataset


class ImageArrays(Dataset):
    """Images held as one uint8 array with their class ids and names.

    A subclass's constructor sets ``_pixels`` ((N, H, W) grayscale or (N, H, W, 3) RGB),
    ``_labels`` ((N,) int64) and ``_class_names``.
    """

    _pixels: np.ndarray
    _labels: np.ndarray
    _class_names: list[str]

    def __len__(self) -> int:
        return len(self._labels)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self._pixels[index]).convert("RGB")

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def class_names(self) -> list[str]:
        return self._class_names
