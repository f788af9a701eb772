"""The parameters models of the built-in components, apart from the components.

The components' modules import torch; these models do not, so a recipe naming built-in
components is validated without importing them (see :class:`dcframe.core.registry.Builtin`).
Each component's module re-exports its model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from dcframe.core.params import (
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    SMALL_INPUT_SIZE,
    BackboneParams,
    ClustererParams,
    Params,
)

# ----------------------------------------------------------------------------- methods


class DeepClusterV2Params(Params):
    """Parameters of DeepCluster-v2 (Caron et al. 2020): the projection head and the loss."""

    temperature: float = Field(
        0.1,
        gt=0,
        le=10,
        description="T of softmax(z . c / T) between a view's projection z and the frozen "
        "prototypes c (DeepCluster-v2: 0.1).",
    )
    projection_dim: int = Field(
        128, ge=2, le=65536, description="Width of the L2-normalised projection (v2: 128)."
    )
    hidden_dim: int = Field(
        2048,
        ge=0,
        le=65536,
        description="Hidden width of the projection MLP, Linear-BatchNorm-ReLU-Linear (v2: "
        "2048); 0: a single linear layer.",
    )


# --------------------------------------------------------------------------- backbones

#: (kernel, stride, padding) of a square conv or max-pool: all the side of its output
#: depends on. The backbones build their layers from these, and the validators below check
#: an ``input_size`` with the same numbers, without torch.
Window = tuple[int, int, int]

#: VGG configuration D: conv output channels in order, "M" a 2x2 stride-2 max-pool.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
)  # fmt: skip
VGG_CONV: Window = (3, 1, 1)
VGG_POOL: Window = (2, 2, 0)


def side_after(side: int, windows: Iterable[Window]) -> int:
    """Side of the maps that ``windows``, in order, leave of a ``side`` px input (below 1:
    nothing is left)."""
    for kernel, stride, padding in windows:
        side = (side + 2 * padding - kernel) // stride + 1
        if side < 1:
            break
    return side


def smallest_input_size(windows_for: Callable[[int], Sequence[Window]]) -> int:
    """The smallest allowed ``input_size`` that ``windows_for(input_size)`` leaves at least
    one pixel of (one more than the largest allowed size when none is)."""
    sizes = range(MIN_INPUT_SIZE, MAX_INPUT_SIZE + 1)
    return next((s for s in sizes if side_after(s, windows_for(s)) >= 1), MAX_INPUT_SIZE + 1)


def small_stem(input_size: int, kernel_at_32: int) -> Window:
    """The first conv of a small-input layout, for ``input_size`` px images.

    Its stride is ``input_size // 32`` (at least 1), so the maps after it keep about 32 px
    whatever the input (``ceil(input_size / stride)``: 32 at multiples of 32, up to 63 in
    between, the input side itself below 32). Its kernel grows by 2 per stride step from
    ``kernel_at_32`` (odd), so that it always spans more than its stride (a 5x5 kernel at
    stride 7 would never see 2 rows and columns in 7), with the padding that keeps it
    centred.
    """
    stride = max(1, input_size // SMALL_INPUT_SIZE)
    kernel = kernel_at_32 + 2 * (stride - 1)
    return kernel, stride, kernel // 2


def alexnet_windows(small_input: bool, input_size: int) -> tuple[Window, ...]:
    """AlexNet's conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5, in forward order.

    The paper's layout: conv1 11x11 stride 4 pad 2, unpadded 3x3 stride-2 max-pools. The
    small-input one: conv1 from :func:`small_stem` (5x5 stride 1 pad 2 up to 63 px) and
    max-pools with padding 1, which halve any side (rounding up).
    """
    conv1 = small_stem(input_size, kernel_at_32=5) if small_input else (11, 4, 2)
    pool = (3, 2, 1 if small_input else 0)
    return conv1, pool, (5, 1, 2), pool, (3, 1, 1), (3, 1, 1), (3, 1, 1), pool


def vgg16_windows() -> tuple[Window, ...]:
    """VGG16's 13 convs (3x3 pad 1) and 5 max-pools (2x2 stride 2), in forward order; the
    same at every input size, with or without small_input."""
    return tuple(VGG_POOL if entry == "M" else VGG_CONV for entry in VGG16_LAYOUT)


class ConvNetParams(BackboneParams):
    """Parameters of the conv + fully-connected backbones (AlexNet, VGG16)."""

    width: float = Field(
        1.0,
        gt=0.0,
        le=4.0,
        description="Multiplier of every conv layer's channel count (1: the paper's widths).",
    )
    fc_dim: int = Field(
        4096,
        ge=16,
        # fc7 alone holds fc_dim^2 weights: 17 GB of float32 at 65,536; beyond, no machine fits.
        le=65536,
        description="Width of fc6 and fc7, hence of the clustering feature (paper: 4096); at "
        "most 65,536, where fc7 alone holds 17 GB of weights.",
    )
    dropout: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Dropout probability in the classifier (paper: 0.5). Its masks are drawn "
        "per process, so only with 0 does a multi-process run match a one-process run number "
        "for number.",
    )


#: Smallest input side of each layout, by the shape arithmetic of its windows: 63 px for
#: AlexNet's paper layout, 32 px for VGG16; every allowed size fits AlexNet's small-input
#: layout and ResNet-50 (whose convs and pools are all padded).
ALEXNET_MIN_INPUT_SIZE = smallest_input_size(lambda size: alexnet_windows(False, size))
VGG16_MIN_INPUT_SIZE = smallest_input_size(lambda _: vgg16_windows())


class AlexNetParams(ConvNetParams):
    """AlexNet's parameters: Sobel input, small-input layout, input size, conv and fc widths."""

    def windows(self) -> tuple[Window, ...]:
        """The conv and max-pool windows of this AlexNet (see :func:`alexnet_windows`)."""
        return alexnet_windows(self.small_input, self.input_size)

    @field_validator("input_size")
    @classmethod
    def _input_size_fits_the_layout(cls, input_size: int, info: ValidationInfo) -> int:
        # The small-input layout takes every allowed size; an invalid small_input (absent
        # from info.data) is reported on its own.
        if info.data.get("small_input") is False and input_size < ALEXNET_MIN_INPUT_SIZE:
            raise ValueError(
                f"{input_size} px is too small for AlexNet's paper layout: conv1 (11x11 "
                f"stride 4) and three unpadded 3x3 stride-2 max-pools leave no pixel below "
                f"{ALEXNET_MIN_INPUT_SIZE} px; use small_input = true or input_size >= "
                f"{ALEXNET_MIN_INPUT_SIZE}"
            )
        return input_size


class VGG16Params(ConvNetParams):
    """VGG16's parameters: Sobel input, small-input layout, input size, conv and fc widths."""

    @field_validator("input_size")
    @classmethod
    def _input_size_fits_the_layout(cls, input_size: int) -> int:
        if input_size < VGG16_MIN_INPUT_SIZE:
            raise ValueError(
                f"{input_size} px is too small for VGG16: its five 2x2 stride-2 max-pools "
                f"need at least {VGG16_MIN_INPUT_SIZE} px, with or without small_input; use "
                f"input_size >= {VGG16_MIN_INPUT_SIZE}"
            )
        return input_size


# ----------------------------------------------------------------------- preprocessors


class PCAParams(Params):
    """Parameters of :class:`~dcframe.components.preprocessors.PCAWhitening`."""

    dim: int = Field(256, ge=1, description="Number of principal components kept (paper: 256).")
    whitening_power: float = Field(
        -0.5,
        # -0.5 whitens and -1 already over-whitens; far below, the weakest directions' factor
        # (eps x lambda_max) ** power overflows float32 (at -10: low-rank features of std 0.05).
        ge=-2.0,
        le=0.0,
        description="Power of the eigenvalue scaling each component: -0.5 whitens, 0 is plain "
        "PCA; at least -2: stronger powers overflow float32 on the weakest directions.",
    )
    eps: float = Field(
        1e-6,
        gt=0.0,
        lt=1.0,
        description="Eigenvalues below eps x the largest are raised to it before the power.",
    )
    fit_sample: int = Field(
        100_000,
        ge=1,
        description="Rows the PCA is fitted on (all rows when there are fewer).",
    )


# -------------------------------------------------------------------------- clusterers


class FaissKMeansParams(ClustererParams):
    """Parameters of :class:`~dcframe.components.clusterers.FaissKMeans`."""

    iterations: int = Field(
        20,
        ge=1,
        le=2**31 - 1,  # faiss stores it in a C int
        description="Lloyd iterations, one run (paper: 20); at most 2^31 - 1 (a C int in faiss).",
    )
    max_points_per_centroid: int = Field(
        10_000_000,
        ge=1,
        le=2**31 - 1,
        description="faiss subsamples above k x this many rows; the default never does (paper).",
    )
    verbose: bool = Field(False, description="Let faiss print its per-iteration progress.")


class LloydParams(ClustererParams):
    """What every Lloyd k-means from random rows takes: the iterations and the start."""

    iterations: int = Field(20, ge=1, description="Maximum Lloyd iterations, one run (paper: 20).")
    init: Literal["random", "k-means++"] = Field(
        "random",
        description="Initial centroids: k distinct random rows (paper) or k-means++ seeding.",
    )


class SklearnKMeansParams(LloydParams):
    """Parameters of :class:`~dcframe.components.clusterers.SklearnKMeans`."""


class TorchKMeansParams(LloydParams):
    """Parameters of :class:`~dcframe.components.clusterers.TorchKMeans`."""

    metric: Literal["euclidean", "spherical"] = Field(
        "euclidean",
        description=(
            "euclidean (paper) or spherical: rows and centroids L2-normalised, rows assigned "
            "to the centroid of highest cosine similarity."
        ),
    )
    batch_rows: int = Field(
        65536,
        ge=1,
        description=(
            "Rows per distance block: memory holds a batch_rows x k float32 score matrix, "
            "never the full N x k one."
        ),
    )


# ---------------------------------------------------------------------------- samplers


class SamplerParams(Params):
    """Parameters of the built-in samplers."""

    reassign: float = Field(
        1.0,
        gt=0.0,
        # An epoch's M indices are held in memory at once: 1e12 x N asks for terabytes.
        le=1000.0,
        description="Images per epoch as a multiple of the dataset size: M = round(reassign x N); "
        "at most 1000, since the M indices are held in memory at once.",
    )


class UniformClusterParams(SamplerParams):
    """Parameters of :class:`~dcframe.components.samplers.UniformClusterSampler`."""

    released_code_indexing: bool = Field(
        False,
        description="Reproduce the released code's bug: use the drawn indices as positions in "
        "the images re-ordered cluster by cluster (undoes the balancing; ablations only).",
    )


# ---------------------------------------------------------------------------- datasets


class ImageFolderParams(Params):
    root: str = Field(
        description="Folder of images: either one sub-folder per class (its images at any "
        "depth below it; labels feed the metrics only) or a flat folder of images "
        "(unlabelled), not both.",
        min_length=1,
    )
    reduced_decoding: bool = Field(
        True,
        description="Decode JPEGs at 1/2, 1/4 or 1/8 scale when that still covers what the "
        "network uses of them (PIL's draft mode): much faster for small inputs on large "
        "photos; off: always at full size.",
    )


class SklearnDigitsParams(Params):
    split: Literal["all", "train", "test"] = Field(
        "all",
        description="'all' 1,797 images; fixed split: 'test' is every 5th image "
        "(index % 5 == 0, 360 images), 'train' the other 1,437.",
    )


class FileListParams(Params):
    path: str = Field(
        min_length=1,
        description="The list file. Image paths in it are relative to the list file's folder "
        "(or absolute).",
    )
    format: Literal["auto", "lines", "csv", "tsv"] = Field(
        "auto",
        description="'lines': one image per line, 'PATH' or 'PATH<TAB>LABEL' (blank lines and "
        "lines starting with '#' skipped); 'csv'/'tsv': a header row, then one image a row; "
        "'auto': by the file's suffix (.csv, .tsv, anything else is lines).",
    )
    path_column: str = Field(
        "path", min_length=1, description="csv/tsv: the column of image paths."
    )
    label_column: str = Field(
        "",
        description="csv/tsv: the column of labels, class names or integer class ids "
        "(empty: unlabelled).",
    )
    reduced_decoding: bool = Field(
        True, description="As imagefolder's: decode JPEGs at a reduced scale when that suffices."
    )


class WebDatasetParams(Params):
    shards: str = Field(
        min_length=1,
        description="The tar shards: a brace pattern (/data/train-{000000..000146}.tar), a glob "
        "(/data/train-*.tar), or several of these joined by '::', in WebDataset's notation.",
    )
    image_extensions: tuple[str, ...] = Field(
        ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff"),
        min_length=1,
        description="Member extensions that hold a sample's image, in order of preference.",
    )
    label_extension: str = Field(
        "cls",
        description="Member extension holding a sample's integer class id as text "
        "(WebDataset's 'cls'); when no sample has one, the data is unlabelled. Empty: ignore "
        "labels.",
    )
    reduced_decoding: bool = Field(
        True, description="As imagefolder's: decode JPEGs at a reduced scale when that suffices."
    )


class CifarParams(Params):
    root: str = Field(
        min_length=1,
        description="The extracted python-version folder (cifar-10-batches-py, "
        "cifar-100-python) holding the batch files.",
    )
    split: Literal["train", "test"] = Field(
        "train", description="'train' (50,000 images) or 'test' (10,000)."
    )


class MnistParams(Params):
    root: str = Field(
        min_length=1,
        description="Folder holding the idx files (train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or not).",
    )
    split: Literal["train", "test"] = Field(
        "train", description="'train' (60,000 images) or 'test' (the 10,000 t10k images)."
    )


# ----------------------------------------------------------------------------- loggers


class TensorBoardParams(Params):
    """Where TensorBoard's event files go and what they hold."""

    every_steps: int = Field(
        10, ge=1, description="Log the running loss, lr and images/s every n training steps."
    )
    gallery: bool = Field(
        True,
        description="An image per epoch: the largest clusters, each a row of the images "
        "nearest its centroid.",
    )
