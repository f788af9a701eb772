"""``sklearn-digits``: scikit-learn's embedded 8x8 digits, the dataset that needs no files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dcframe.components.params import SklearnDigitsParams
from dcframe.interfaces import Dataset


class SklearnDigits(Dataset):
    """scikit-learn's embedded 8x8 handwritten digits (1,797 labelled images, no download)."""

    Params = SklearnDigitsParams
    params: SklearnDigitsParams

    def __init__(self, params: SklearnDigitsParams) -> None:
        super().__init__(params)
        from sklearn.datasets import load_digits

        digits = load_digits()
        index = np.arange(len(digits.target))
        keep = {"all": index >= 0, "test": index % 5 == 0, "train": index % 5 != 0}[params.split]
        # Pixel values are 0..16; stretch them to the 0..255 range of ordinary images.
        self._pixels = np.round(digits.images[keep] * (255.0 / 16.0)).astype(np.uint8)
        self._labels = digits.target[keep].astype(np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self._pixels[index], mode="L").convert("RGB")

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def class_names(self) -> list[str]:
        return [str(d) for d in range(10)]
