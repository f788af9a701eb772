"""``imagefolder``: class sub-folders (images at any depth below them), or a flat folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dcframe.components.builtin_params import ImageFolderParams
from dcframe.components.datasets._files import IMAGE_EXTENSIONS, check_path, os_problem
from dcframe.components.datasets._image_files import ImageFiles
from dcframe.core.errors import UserError


def _is_image(entry: os.DirEntry[str]) -> bool:
    """A file with an image extension. A broken link is one too (as torchvision lists
    it): it is then reported as unreadable rather than left out without a word."""
    if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
        return False
    return entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path))


def _sorted_entries(folder: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _images_below(class_dir: os.DirEntry[str]) -> list[str]:
    """Images anywhere below ``class_dir``, in torchvision's order: folders sorted by their
    path, the images of each folder sorted by name. Symbolic links are followed, as
    torchvision does, but a link back to a folder being walked is refused (it never ends)."""
    by_folder: list[tuple[str, list[str]]] = []
    pending = [(class_dir.path, frozenset[tuple[int, int]]())]
    while pending:
        folder, ancestors = pending.pop()
        info = os.stat(folder)
        here = (info.st_dev, info.st_ino)
        if here in ancestors:
            raise UserError(
                f"data.root: {folder!r} is a symbolic link loop (it leads back to a folder "
                "above it); fix or remove the link"
            )
        entries = _sorted_entries(folder)
        by_folder.append((folder, [e.path for e in entries if _is_image(e)]))
        pending += [(e.path, ancestors | {here}) for e in entries if e.is_dir()]
    return [path for _, files in sorted(by_folder) for path in files]


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
        files = _images_below(class_dir)
        paths += files
        labels += [label] * len(files)
    return paths, labels, [e.name for e in class_dirs]


class ImageFolder(ImageFiles):
    """Images from a folder of class sub-folders, or from a flat folder of images.

    Sub-folder names become class labels (sorted, as torchvision does); they are only used
    to measure NMI against the truth, never for training. A class takes every image at
    any depth below its folder (``train/cat/indoor/1.jpg`` is a cat), again as
    torchvision's ``ImageFolder`` does. Files are ordered by class, then by folder path,
    then by name, so row ``i`` of every feature matrix is always the same image. A folder
    with both class sub-folders and images of its own is refused rather than half read.
    Images decode to 8-bit RGB as :func:`dcframe.data.images.open_rgb` describes.
    """

    Params = ImageFolderParams
    params: ImageFolderParams

    def __init__(self, params: ImageFolderParams) -> None:
        super().__init__(params)
        root = Path(params.root).expanduser()
        check_path(root, "data.root", "folder", "/path/to/imagenet/train")
        try:
            paths, labels, class_names = _scan(root)
        except OSError as error:  # a looping link or an unreadable class folder
            raise UserError(os_problem(str(error.filename or root), error)) from error
        if not paths:
            raise UserError(
                f"data.root: no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r} "
                "or its class sub-folders"
            )
        ids = None if class_names is None else np.asarray(labels, np.int64)
        self._hold(paths, ids, class_names)
