"""``sklearn-digits``: scikit-learn's embedded 8x8 digits, the dataset that needs no files."""

from __future__ import annotations

import numpy as np

from dcframe.components.builtin_params import SklearnDigitsParams
from dcframe.components.datasets._arrays import ImageArrays


class SklearnDigits(ImageArrays):
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
        self._class_names = [str(d) for d in range(10)]
