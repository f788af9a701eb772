"""The parameters models of the built-in components, apart from the components.

The components' modules import torch; these models do not, so a recipe naming built-in
components is validated without importing them (see :class:`dcframe.registry.Builtin`).
Each component's module re-exports its model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dcframe.params import BackboneParams, ClustererParams, Params

# --------------------------------------------------------------------------- backbones


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


class AlexNetParams(ConvNetParams):
    """AlexNet's parameters: Sobel input, small-input variant, conv width and fc width."""


class VGG16Params(ConvNetParams):
    """VGG16's parameters: Sobel input, small-input variant, conv width and fc width."""


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


class SklearnKMeansParams(ClustererParams):
    """Parameters of :class:`~dcframe.components.clusterers.SklearnKMeans`."""

    iterations: int = Field(20, ge=1, description="Maximum Lloyd iterations, one run (paper: 20).")
    init: Literal["random", "k-means++"] = Field(
        "random", description="Initial centroids: k random rows (paper) or k-means++ seeding."
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
