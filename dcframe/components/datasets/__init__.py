"""Built-in datasets, one module per format.

* :mod:`~dcframe.components.datasets.folder`: ``imagefolder`` (class folders or a flat
  folder);
* :mod:`~dcframe.components.datasets.filelist`: ``filelist`` (a text or CSV list of paths);
* :mod:`~dcframe.components.datasets.shards`: ``webdataset`` (tar shards, an optional extra);
* :mod:`~dcframe.components.datasets.benchmarks`: ``cifar10``, ``cifar100``, ``mnist``,
  ``fashion-mnist`` from their usual files;
* :mod:`~dcframe.components.datasets.digits`: ``sklearn-digits`` (embedded, no files).
"""

from __future__ import annotations

from dcframe.components.datasets._files import IMAGE_EXTENSIONS
from dcframe.components.datasets.benchmarks import (
    Cifar10,
    Cifar100,
    CifarParams,
    FashionMnist,
    Mnist,
    MnistParams,
)
from dcframe.components.datasets.digits import SklearnDigits, SklearnDigitsParams
from dcframe.components.datasets.filelist import FileList, FileListParams
from dcframe.components.datasets.folder import ImageFolder, ImageFolderParams
from dcframe.components.datasets.shards import WebDataset, WebDatasetParams

__all__ = [
    "IMAGE_EXTENSIONS",
    "Cifar10",
    "Cifar100",
    "CifarParams",
    "FashionMnist",
    "FileList",
    "FileListParams",
    "ImageFolder",
    "ImageFolderParams",
    "Mnist",
    "MnistParams",
    "SklearnDigits",
    "SklearnDigitsParams",
    "WebDataset",
    "WebDatasetParams",
]
