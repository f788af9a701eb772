"""What every file-based dataset checks before reading: the path it was given, and labels."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import numpy as np

from dcframe.core.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def os_problem(path: str, error: OSError, field: str = "data.root") -> str:
    """What went wrong reading ``path`` on the file system, and what to do about it."""
    if error.errno == errno.ELOOP:
        return (
            f"{field}: {path!r} is a symbolic link loop (it leads back to itself); "
            f"fix or remove the link, or point {field} at the real location"
        )
    if isinstance(error, PermissionError):
        return (
            f"{field}: permission denied reading {path!r}; give your user read access "
            f"(e.g. chmod -R u+rX {path!r}) or point {field} elsewhere"
        )
    return (
        f"{field}: cannot read {path!r} ({error.strerror or error}); check it, "
        f"or point {field} elsewhere"
    )


def check_path(path: Path, field: str, want: str, example: str) -> None:
    """Fail with a message saying what ``path`` is when it is not a readable ``want``.

    Args:
        path: The path from the parameters.
        field: The parameter, as the user writes it (``data.root``).
        want: "folder" or "file".
        example: A ``--set`` example of a correct value.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        broken = " (a symbolic link to a missing target)" if path.is_symlink() else ""
        raise UserError(
            f"{field}: {want} {str(path)!r} does not exist{broken}; point it at your "
            f"images, e.g. --set {field}={example}"
        ) from None
    except OSError as error:
        raise UserError(os_problem(str(path), error, field)) from error
    is_dir = stat.S_ISDIR(info.st_mode)
    if want == "folder" and not is_dir:
        what = "a file" if stat.S_ISREG(info.st_mode) else "a special file"
        raise UserError(
            f"{field}: {str(path)!r} is {what}, not a folder; point {field} at the folder "
            "that holds the images"
        )
    if want == "file" and not stat.S_ISREG(info.st_mode):
        what = "a folder" if is_dir else "a special file"
        raise UserError(
            f"{field}: {str(path)!r} is {what}, not a file; e.g. --set {field}={example}"
        )


def class_ids(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class ids and class names of textual labels.

    Labels that are all non-negative integers are the class ids themselves (class names
    ``"0"`` to the largest); otherwise they are class names, sorted as folder names are.
    """
    if all(label.isdigit() for label in labels):
        ids = np.asarray([int(label) for label in labels], dtype=np.int64)
        return ids, [str(c) for c in range(int(ids.max()) + 1 if len(ids) else 0)]
    names = sorted(set(labels))
    index = {name: c for c, name in enumerate(names)}
    return np.asarray([index[label] for label in labels], dtype=np.int64), names
