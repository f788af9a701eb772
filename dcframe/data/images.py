"""Decoding image files into 8-bit RGB pictures, with one error type for every bad file.

High-depth modes are scaled by their real range rather than clipped as PIL's own
``convert`` does (which leaves a 16-bit PNG with a handful of levels and a 0..1 float
TIFF black):

* unsigned 16-bit modes (``I;16``, ``I;16B``, ...) by the type's range, 0..65535;
* 32-bit integer (``I``) and float (``F``) images by the smallest standard range that
  holds all their values (0..1 for floats, then 0..255, then 0..65535), else by the
  image's own minimum..maximum; NaN and infinite values become black.

Every other mode (RGBA, LA, P, CMYK, 1, ...) converts as PIL does.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from dcframe.core.errors import BadImageError

UNSIGNED_16_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# Candidate ranges, tried in order; the first that holds every value wins.
_RANGES = {"F": ((0.0, 1.0), (0.0, 255.0), (0.0, 65535.0)), "I": ((0, 255), (0, 65535))}
_MAX_REASON = 300


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``, with high-depth modes scaled by their real range."""
    if image.mode in UNSIGNED_16_BIT:
        return _scaled(np.asarray(image), 0.0, 65535.0)
    if image.mode in _RANGES:
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return _scaled(np.zeros(values.shape), 0.0, 1.0)
        lo, hi = float(finite.min()), float(finite.max())
        for low, high in _RANGES[image.mode]:
            if low <= lo and hi <= high:
                return _scaled(values, low, high)
        return _scaled(values, lo, hi)
    return image.convert("RGB")


def _scaled(values: np.ndarray, low: float, high: float) -> Image.Image:
    span = high - low
    if span <= 0:  # a constant image outside every standard range
        return Image.new("RGB", (values.shape[1], values.shape[0]))
    unit = (np.nan_to_num(values.astype(np.float64), nan=low, posinf=low, neginf=low) - low) / span
    gray = np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def open_rgb(
    path: str | Path | IO[bytes], min_side: int | None = None, name: str | None = None
) -> Image.Image:
    """Decode the file at ``path`` (or an open binary file: a tar member) into 8-bit RGB.

    ``name`` is what errors call the image (default: ``path``). With ``min_side``, a JPEG
    may be decoded at 1/2, 1/4 or 1/8 scale (PIL's draft mode), the smallest that keeps
    both sides at least ``min_side`` pixels.

    Raises:
        BadImageError: for anything that keeps the file from decoding: missing or
            unreadable, not an image, truncated, corrupt, or larger than PIL's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    shown = name if name is not None else str(path)
    try:
        # PIL only warns between its limit and twice that: make the limit a hard one, so
        # that a huge file is refused the same way whatever its exact size.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if min_side is not None and image.format == "JPEG":
                    image.draft("RGB", (min_side, min_side))
                return to_rgb(image)
    except MemoryError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(shown, _bomb_reason(error)) from error
    except Exception as error:  # PIL raises many types for bad files; all mean the same
        raise BadImageError(shown, _reason(error)) from error


def _bomb_reason(error: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    limit = Image.MAX_IMAGE_PIXELS or 0
    return (
        f"{size}, over the limit of {limit:,} that guards against decompression bombs; "
        "if you trust the file, shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS "
        "(e.g. in a plugin module)"
    )


def _reason(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):  # its message only repeats the path
        return "not an image PIL can identify (unknown format or corrupt header)"
    text = str(error) or type(error).__name__
    if not isinstance(error, OSError | ValueError | SyntaxError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
