"""``sklearn-digits``: scikit-learn's embedded 8x8 digits, the dataset that needs no files."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from dcframe.interfaces import Dataset
from dcframe.params import Params


class SklearnDigitsParams(Params):
    split: Literal["all", "train", "test"] = Field(
        "all",
        description="'all' 1,797 images; fixed split: 'test' is every 5th image "
        "(index % 5 == 0, 360 images), 'train' the other 1,437.",
    )


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
