"""Built-in datasets: a folder of images, and scikit-learn's embedded digits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from dcframe.errors import UserError
from dcframe.interfaces import Dataset
from dcframe.params import Params

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


class ImageFolderParams(Params):
    root: str = Field(
        description="Folder of images: either one sub-folder per class (labels feed the "
        "metrics only) or a flat folder of images (unlabelled).",
        min_length=1,
    )


class ImageFolder(Dataset):
    """Images from a folder of class sub-folders, or from a flat folder of images.

    Sub-folder names become class labels (sorted, as torchvision does); they are only used
    to measure NMI against the truth, never for training. Files are ordered by class then
    name, so row ``i`` of every feature matrix is always the same image.
    """

    Params = ImageFolderParams
    params: ImageFolderParams

    def __init__(self, params: ImageFolderParams) -> None:
        super().__init__(params)
        root = Path(params.root).expanduser()
        if not root.is_dir():
            raise UserError(
                f"data.root: folder {str(root)!r} does not exist; point it at your images, "
                "e.g. --set data.root=/path/to/imagenet/train"
            )
        entries = _sorted_entries(root)
        class_dirs = [e for e in entries if e.is_dir()]
        paths: list[str] = []
        labels: list[int] = []
        if class_dirs:
            self._class_names: list[str] | None = [e.name for e in class_dirs]
            for label, class_dir in enumerate(class_dirs):
                files = [e.path for e in _sorted_entries(Path(class_dir.path)) if _is_image(e)]
                paths += files
                labels += [label] * len(files)
        else:
            self._class_names = None
            paths = [e.path for e in entries if _is_image(e)]
        if not paths:
            raise UserError(
                f"data.root: no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r} "
                "or its class sub-folders"
            )
        self.paths = paths
        self._labels = np.asarray(labels, dtype=np.int64) if class_dirs else None

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise UserError(
                f"cannot read image {path!r} ({error}); remove or replace the file"
            ) from error

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels

    @property
    def class_names(self) -> list[str] | None:
        return self._class_names


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
