"""Local copies of the standard small benchmarks, read from their usual files (no download).

* ``cifar10`` / ``cifar100``: the "python version" batches (``cifar-10-batches-py``,
  ``cifar-100-python``), pickled dicts of ``b"data"`` (N x 3072 uint8, the red, green and
  blue planes of 32x32 images) and labels.
* ``mnist`` / ``fashion-mnist``: the four idx files (``train-images-idx3-ubyte`` ...),
  gzipped or not.

The pickles are read by an unpickler that only builds numpy arrays and plain containers,
so a tampered file cannot run code when it is loaded.
"""

from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dcframe.components.builtin_params import CifarParams, MnistParams
from dcframe.components.datasets._arrays import ImageArrays
from dcframe.components.datasets._files import check_class_ids, check_path, os_problem, shorten
from dcframe.core.errors import UserError

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes under protocol 2
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict[bytes, Any]:
    check_path(path, "data.root", "file", "/data/cifar-10-batches-py")
    try:
        with path.open("rb") as file:
            loaded = _ArraysOnly(file, encoding="bytes").load()
    except OSError as error:
        raise UserError(os_problem(str(path), error)) from error
    except Exception as error:
        # A damaged pickle fails in many ways (a missing codec, a bad array state, deep
        # nesting, ...): each of them means "not a batch".
        raise UserError(
            f"data.root: {str(path)!r} is not a CIFAR python batch ({error}); download the "
            "'python version' of the dataset and extract it"
        ) from error
    if not isinstance(loaded, dict):
        raise UserError(f"data.root: {str(path)!r} holds a {type(loaded).__name__}, not a batch")
    return loaded


class _Cifar(ImageArrays):
    """Shared reading of the CIFAR python batches; subclasses name the files and keys."""

    Params = CifarParams
    params: CifarParams
    files: ClassVar[dict[str, tuple[str, ...]]]
    meta_file: ClassVar[str]
    label_key: ClassVar[bytes]
    names_key: ClassVar[bytes]

    def __init__(self, params: CifarParams) -> None:
        super().__init__(params)
        root = Path(params.root).expanduser()
        check_path(root, "data.root", "folder", "/data/cifar-10-batches-py")
        pixels, labels = [], []
        for name in self.files[params.split]:
            data, found = self._batch(root / name)
            pixels.append(data)
            labels.append(found)
        if sum(len(found) for found in labels) == 0:
            raise UserError(
                f"data.root: the {params.split} batches in {str(root)!r} hold no images; "
                "extract the dataset again"
            )
        # Each row is three 32x32 planes (R, G, B): make it height x width x channel.
        self._pixels = np.concatenate(pixels).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self._labels = np.concatenate(labels)
        self._class_names = self._names(root)

    def _batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The (N, 3072) uint8 pixels and the N class ids of one batch file."""
        batch = _unpickle(path)
        missing = next((k for k in (b"data", self.label_key) if k not in batch), None)
        if missing is not None:
            raise UserError(
                f"data.root: {str(path)!r} has no {missing!r} entry; is this the right "
                f"dataset ({type(self).__name__})?"
            )
        data, found = batch[b"data"], batch[self.label_key]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
            what = f"a {data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
            raise UserError(
                f"data.root: the b'data' entry of {str(path)!r} is {what} of shape "
                f"{np.shape(data) if isinstance(data, np.ndarray) else '-'}, not an N x 3072 "
                "uint8 array; the file is damaged or not a CIFAR batch: extract it again"
            )
        if not (isinstance(found, list) or (isinstance(found, np.ndarray) and found.ndim == 1)):
            what = f"of shape {found.shape}" if isinstance(found, np.ndarray) else "(one value)"
            raise UserError(
                f"data.root: the {self.label_key!r} entry of {str(path)!r} is "
                f"{type(found).__name__} {what}, not a list of N class ids; the file is "
                "damaged or not a CIFAR batch: extract it again"
            )
        ids = check_class_ids(
            found,
            lambda i: f"data.root: label {i + 1} of {str(path)!r}",
            "the file is damaged: extract the dataset again",
        )
        if data.shape[1] != 3072 or len(data) != len(ids):
            raise UserError(
                f"data.root: {str(path)!r} holds data of shape {data.shape} and {len(ids)} "
                "labels; a CIFAR batch has N x 3072 bytes and N labels"
            )
        return data, ids

    def _names(self, root: Path) -> list[str]:
        """The meta file's class names, or the numbers when it has too few or none."""
        count = int(self._labels.max()) + 1
        meta = root / self.meta_file
        if meta.is_file():
            names = _unpickle(meta).get(self.names_key)
            if isinstance(names, list) and len(names) >= count:
                return [_class_name(meta, i, n) for i, n in enumerate(names)]
        return [str(c) for c in range(count)]


def _class_name(meta: Path, index: int, name: object) -> str:
    """Class name ``index`` of a meta file, which pickles them as bytes (or str)."""
    if isinstance(name, str):
        return name
    if isinstance(name, bytes):
        try:
            return name.decode()
        except UnicodeDecodeError as error:
            raise UserError(
                f"data.root: class name {index + 1} of {str(meta)!r} ({shorten(name)}) is not "
                f"UTF-8 text ({error.reason}); the file is damaged: extract it again, or "
                "remove it to name the classes by number"
            ) from None
    raise UserError(
        f"data.root: class name {index + 1} of {str(meta)!r} is a {type(name).__name__}, "
        "not text; the file is damaged: extract it again, or remove it to name the classes "
        "by number"
    )


class Cifar10(_Cifar):
    """CIFAR-10 from its python batches (data_batch_1..5, test_batch, batches.meta)."""

    files: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    }
    meta_file = "batches.meta"
    label_key = b"labels"
    names_key = b"label_names"


class Cifar100(_Cifar):
    """CIFAR-100 from its python files (train, test, meta), with the 100 fine labels."""

    files: ClassVar[dict[str, tuple[str, ...]]] = {"train": ("train",), "test": ("test",)}
    meta_file = "meta"
    label_key = b"fine_labels"
    names_key = b"fine_label_names"


# ---------------------------------------------------------------------------- MNIST

_IDX_UBYTE = 0x08


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """The uint8 array of an idx file (big-endian header: 0, 0, type, dims, then sizes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise UserError(f"data.root: cannot read {str(path)!r} ({error})") from error
    header = 4 + 4 * dims
    if len(data) < header or data[:2] != b"\0\0" or data[2] != _IDX_UBYTE or data[3] != dims:
        raise UserError(
            f"data.root: {str(path)!r} is not an idx file of {dims}-dimensional bytes (its "
            f"header is {data[:4].hex() or 'empty'}); is it the right file?"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    values = np.frombuffer(data, dtype=np.uint8, offset=header)
    if values.size != math.prod(shape):  # Python's product: numpy's overflows on odd headers
        raise UserError(
            f"data.root: {str(path)!r} declares {shape} values but holds {values.size} "
            "(truncated?); fetch the file again"
        )
    return values.reshape(shape)


class Mnist(ImageArrays):
    """MNIST handwritten digits from the idx files (28x28 grayscale, 10 classes)."""

    Params = MnistParams
    params: MnistParams
    names: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))

    def __init__(self, params: MnistParams) -> None:
        super().__init__(params)
        root = Path(params.root).expanduser()
        check_path(root, "data.root", "folder", "/data/mnist")
        prefix = "train" if params.split == "train" else "t10k"
        images = self._find(root, f"{prefix}-images-idx3-ubyte")
        labels = self._find(root, f"{prefix}-labels-idx1-ubyte")
        self._pixels = _read_idx(images, 3)
        if 0 in self._pixels.shape:
            raise UserError(
                f"data.root: {str(images)!r} declares images of shape {self._pixels.shape}, "
                "which holds no pixels; fetch the file again"
            )
        self._labels = check_class_ids(
            _read_idx(labels, 1).tolist(),
            lambda i: f"data.root: label {i + 1} of {str(labels)!r}",
            "the file is damaged: fetch it again",
            limit=len(self.names) - 1,
        )
        self._class_names = list(self.names)
        if len(self._pixels) != len(self._labels):
            raise UserError(
                f"data.root: {len(self._pixels)} images but {len(self._labels)} labels in "
                f"{str(root)!r}; the two {prefix} files are not a pair"
            )

    @staticmethod
    def _find(root: Path, name: str) -> Path:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        raise UserError(
            f"data.root: no {name} (or {name}.gz) in {str(root)!r}; point data.root at the "
            "folder holding the four idx files"
        )


class FashionMnist(Mnist):
    """Fashion-MNIST from its idx files (same names and format as MNIST's, 10 garments)."""

    names = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
