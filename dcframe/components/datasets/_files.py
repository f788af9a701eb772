"""What every file-based dataset checks before reading: the path it was given, and labels."""

from __future__ import annotations

import errno
import stat
from collections.abc import Callable, Iterable
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


MAX_CLASS_ID = 999_999
"""The largest class id a dataset may give. Metrics, evaluations and reports size their
per-class tables (class names, votes, contingency tables) by the largest id, so a stray
huge label would allocate memory for every id below it; a million classes covers every
public dataset (Google Landmarks v2 has 203,094)."""


def class_id_problem(value: object, limit: int = MAX_CLASS_ID) -> str | None:
    """Why ``value`` is not a class id (a whole number from 0 to ``limit``), or None."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return f"{shorten(value)} (a {type(value).__name__}) is not a class id"
    if not 0 <= value <= limit:
        return f"class id {shorten(value)} is outside 0..{limit:,}"
    return None


def check_class_ids(
    values: Iterable[object], describe: Callable[[int], str], fix: str, limit: int = MAX_CLASS_ID
) -> np.ndarray:
    """``values`` as int64 class ids, or a :class:`UserError` naming the first bad one.

    Args:
        values: The labels as read from the file.
        describe: The parameter and the place of label ``i`` (``data.root: label 3 of 'x'``).
        fix: What to do about a bad label.
        limit: The largest class id this dataset allows.
    """
    values = list(values)
    for i, value in enumerate(values):
        problem = class_id_problem(value, limit)
        if problem is not None:
            raise UserError(
                f"{describe(i)}: {problem}; class ids are whole numbers from 0 to {limit:,}, "
                f"one per class counted from 0; {fix}"
            )
    return np.asarray(values, dtype=np.int64)


def shorten(value: object) -> str:
    """``value`` as written in a message, cut when long."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def ascii_class_id(text: str) -> int | None:
    """The class id ``text`` writes in the digits 0-9 (None: it writes none).

    ``str.isdigit`` alone also accepts superscripts and other scripts' digits, which
    ``int`` then refuses or reads as a number the writer never meant.
    """
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def class_ids(labels: list[str], describe: Callable[[int], str]) -> tuple[np.ndarray, list[str]]:
    """Class ids and class names of textual labels.

    Labels that are all non-negative integers are the class ids themselves (class names
    ``"0"`` to the largest); otherwise they are class names, sorted as folder names are.
    A label that looks like a number without being one in the digits 0-9 (``"²"``) is
    refused rather than silently turning every label into a name.

    Args:
        labels: One label a image, as written.
        describe: The parameter and the place of label ``i``, for messages.
    """
    numbers = [ascii_class_id(label) for label in labels]
    if all(n is not None for n in numbers):
        fix = "renumber the classes from 0, or label the images with class names"
        ids = check_class_ids(numbers, describe, fix)
        return ids, [str(c) for c in range(int(ids.max()) + 1 if len(ids) else 0)]
    odd = next(
        (i for i, label in enumerate(labels) if numbers[i] is None and label.strip().isdigit()),
        None,
    )
    if odd is not None:
        raise UserError(
            f"{describe(odd)}: {labels[odd]!r} is written with digits other than 0-9; "
            "write class ids with the digits 0-9 (or use class names that are not numbers)"
        )
    names = sorted(set(labels))
    index = {name: c for c, name in enumerate(names)}
    return np.asarray([index[label] for label in labels], dtype=np.int64), names
