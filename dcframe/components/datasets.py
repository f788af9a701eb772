"""Built-in datasets: a folder of images, and scikit-learn's embedded digits."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from dcframe.errors import UserError
from dcframe.images import open_rgb
from dcframe.interfaces import Dataset
from dcframe.params import Params

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)


def _sorted_entries(folder: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _os_problem(path: str, error: OSError) -> str:
    """What went wrong reading ``path`` on the file system, and what to do about it."""
    if error.errno == errno.ELOOP:
        return (
            f"data.root: {path!r} is a symbolic link loop (it leads back to itself); "
            "fix or remove the link, or point data.root at the real folder"
        )
    if isinstance(error, PermissionError):
        return (
            f"data.root: permission denied reading {path!r}; give your user read access "
            f"(e.g. chmod -R u+rX {path!r}) or point data.root elsewhere"
        )
    return (
        f"data.root: cannot read {path!r} ({error.strerror or error}); check the folder, "
        "or point data.root elsewhere"
    )


def _check_root(root: Path) -> None:
    """Fail with a message that says what ``root`` is when it is not a readable folder."""
    try:
        info = root.stat()
    except FileNotFoundError:
        broken = " (a symbolic link to a missing target)" if root.is_symlink() else ""
        raise UserError(
            f"data.root: folder {str(root)!r} does not exist{broken}; point it at your "
            "images, e.g. --set data.root=/path/to/imagenet/train"
        ) from None
    except OSError as error:
        raise UserError(_os_problem(str(root), error)) from error
    if not stat.S_ISDIR(info.st_mode):
        what = "a file" if stat.S_ISREG(info.st_mode) else "a special file"
        raise UserError(
            f"data.root: {str(root)!r} is {what}, not a folder; "
            "point data.root at the folder that holds the images"
        )


def _scan(root: Path) -> tuple[list[str], list[int], list[str] | None]:
    """Image paths, their labels and the class names (None for a flat folder)."""
    entries = _sorted_entries(root)
    class_dirs = [e for e in entries if e.is_dir()]
    loose = [e for e in entries if _is_image(e)]
    if not class_dirs:
        return [e.path for e in loose], [], None
    if loose:
        # Class folders and images side by side: the images have no label, and leaving
        # them out would drop data without a word.
        raise UserError(
            f"data.root: {len(loose)} image(s) at the top of {str(root)!r} (e.g. "
            f"{loose[0].name!r}) sit beside {len(class_dirs)} class folder(s) and would be "
            "left out; move them into a class folder, or point data.root at a folder that "
            "holds only class folders or only images"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        files = [e.path for e in _sorted_entries(class_dir.path) if _is_image(e)]
        paths += files
        labels += [label] * len(files)
    return paths, labels, [e.name for e in class_dirs]


class ImageFolderParams(Params):
    root: str = Field(
        description="Folder of images: either one sub-folder per class (labels feed the "
        "metrics only) or a flat folder of images (unlabelled), not both.",
        min_length=1,
    )
    reduced_decoding: bool = Field(
        True,
        description="Decode JPEGs at 1/2, 1/4 or 1/8 scale when that still covers what the "
        "network uses of them (PIL's draft mode): much faster for small inputs on large "
        "photos; off: always at full size.",
    )


class ImageFolder(Dataset):
    """Images from a folder of class sub-folders, or from a flat folder of images.

    Sub-folder names become class labels (sorted, as torchvision does); they are only used
    to measure NMI against the truth, never for training. Files are ordered by class then
    name, so row ``i`` of every feature matrix is always the same image. A folder with
    both class sub-folders and images of its own is refused rather than half read.
    Images decode to 8-bit RGB as :func:`dcframe.images.open_rgb` describes.
    """

    Params = ImageFolderParams
    params: ImageFolderParams

    def __init__(self, params: ImageFolderParams) -> None:
        super().__init__(params)
        root = Path(params.root).expanduser()
        _check_root(root)
        try:
            paths, labels, self._class_names = _scan(root)
        except OSError as error:  # a looping link or an unreadable class folder
            raise UserError(_os_problem(str(error.filename or root), error)) from error
        if not paths:
            raise UserError(
                f"data.root: no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r} "
                "or its class sub-folders"
            )
        self.paths = paths
        self._labels = None if self._class_names is None else np.asarray(labels, np.int64)
        self._min_side: int | None = None

    def decode_at_least(self, side: int) -> None:
        if self.params.reduced_decoding:
            self._min_side = side

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` in 8-bit RGB; raises :class:`~dcframe.errors.BadImageError`."""
        return open_rgb(self.paths[index], self._min_side)

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
