"""Per-layer feature rows on disk, so that RAM does not grow with the number of images.

A :class:`FeatureCache` is a temporary folder (removed when its ``with`` block ends)
holding one flat float32 file per layer and split, written in image order as batches are
extracted. Rows are read back with plain file reads, a contiguous range at a time
(validation, kNN) or gathered row by row (the shuffled batches of the cached linear
probe). Reads are not memory-mapped on purpose: mapped pages would count in the process'
resident memory, plain reads only fill the kernel's page cache, which it can evict.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch

from dcframe.core.errors import UserError
from dcframe.evaluation.data import Split
from dcframe.evaluation.features import FrozenFeatures, feature_batches
from dcframe.evaluation.runtime import Runtime

#: Bytes per stored value (float32, as the features are computed).
VALUE_BYTES = 4

_CACHE_HINT = "free some space or choose another folder with --cache-dir"


def _size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


class FeatureFile:
    """``rows`` rows of shape ``row_shape`` (float32) in one file, appended in order.

    Args:
        path: The file (created, truncated).
        rows: Number of rows it will hold.
        row_shape: Shape of one row, e.g. ``(dim,)`` or ``(crops, dim)``.
    """

    def __init__(self, path: Path, rows: int, row_shape: tuple[int, ...]) -> None:
        self.path = path
        self.rows = rows
        self.row_shape = row_shape
        self.row_bytes = VALUE_BYTES * math.prod(row_shape)
        self._file = path.open("w+b")
        self._written = 0

    def __len__(self) -> int:
        return self.rows

    def append(self, values: torch.Tensor) -> None:
        """Write the next ``len(values)`` rows (a float32 CPU tensor of rows)."""
        if tuple(values.shape[1:]) != self.row_shape or self._written + len(values) > self.rows:
            raise ValueError(f"{self.path.name}: rows of {tuple(values.shape)} do not fit")
        array = np.ascontiguousarray(values.detach().cpu().numpy(), dtype=np.float32)
        self._file.seek(self._written * self.row_bytes)
        try:
            self._file.write(array.data.cast("B"))
            self._file.flush()  # a full disk shows here, as a UserError, not at a later read
        except OSError as error:
            raise UserError(
                f"feature cache {str(self.path.parent)!r}: cannot write ({error.strerror}); "
                + _CACHE_HINT
            ) from error
        self._written += len(values)

    def _read_into(self, out: np.ndarray, row: int) -> None:
        """Fill the contiguous array ``out`` with the bytes starting at row ``row``."""
        self._file.seek(row * self.row_bytes)
        if self._file.readinto(out.data.cast("B")) != out.nbytes:
            raise RuntimeError(f"{self.path}: short read at row {row}")

    def read(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows ``start:stop`` (all by default), a new (stop - start, *row_shape) tensor."""
        stop = self._written if stop is None else stop
        if not 0 <= start <= stop <= self._written:
            raise IndexError(f"rows {start}:{stop} of {self._written} written")
        out = np.empty((stop - start, *self.row_shape), dtype=np.float32)
        if len(out):
            self._read_into(out, start)
        return torch.from_numpy(out)

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` in that order, a new (len(index), *row_shape) tensor."""
        out = np.empty((len(index), *self.row_shape), dtype=np.float32)
        for i, row in enumerate(index.tolist()):
            if not 0 <= row < self._written:
                raise IndexError(f"row {row} of {self._written} written")
            self._read_into(out[i], row)
        return torch.from_numpy(out)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """All rows in order, ``size`` at a time (the last chunk may be shorter)."""
        for start in range(0, self._written, size):
            yield self.read(start, min(start + size, self._written))

    def close(self) -> None:
        self._file.close()


class FeatureCache:
    """A temporary folder of :class:`FeatureFile` s, removed when the ``with`` block ends.

    Args:
        root: Folder the temporary one is created in (created if missing); None: the
            system's temporary folder (on many systems a RAM disk, hence the command line
            defaults to the output folder).

    Raises:
        UserError: ``root`` cannot be created or written.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.folder: Path | None = None
        self._files: list[FeatureFile] = []

    def __enter__(self) -> FeatureCache:
        try:
            if self.root is not None:
                self.root.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix="dcframe-features-", dir=self.root))
        except OSError as error:
            where = str(self.root) if self.root is not None else tempfile.gettempdir()
            raise UserError(
                f"--cache-dir: cannot create the feature cache in {where!r} "
                f"({error.strerror or error}); choose a writable folder with --cache-dir"
            ) from error
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for file in self._files:
            file.close()
        self._files.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def extract(
        self,
        features: FrozenFeatures,
        split: Split,
        transform: Callable[[Any], torch.Tensor],
        runtime: Runtime,
        description: str,
        crops: int = 1,
    ) -> dict[str, FeatureFile]:
        """Features of every image of ``split`` written to one file per layer, in order.

        Rows are (dim,) per image, or (crops, dim) when ``transform`` returns a stack of
        ``crops`` crops per image (see :func:`~dcframe.evaluation.features.feature_batches`).

        Raises:
            UserError: the cache's disk has too little free space for these rows.
        """
        assert self.folder is not None, "use the cache in a with block"
        row_shape = {
            name: ((crops,) if crops > 1 else ()) + (dim,) for name, dim in features.dims.items()
        }
        needed = sum(len(split) * VALUE_BYTES * math.prod(s) for s in row_shape.values())
        free = shutil.disk_usage(self.folder).free
        if needed > free:
            raise UserError(
                f"feature cache {str(self.folder.parent)!r}: the {description} need "
                f"{_size(needed)} on disk and only {_size(free)} are free; " + _CACHE_HINT
            )
        tag = f"{len(self._files):02d}"  # several extractions of one split never collide
        files = {
            name: FeatureFile(self.folder / f"{tag}-{name}.f32", len(split), row_shape[name])
            for name in features.layers
        }
        self._files.extend(files.values())
        for batch in feature_batches(features, split, transform, runtime, description, crops):
            for name, values in batch.items():
                files[name].append(values)
        return files
