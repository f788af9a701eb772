"""The base class of every component's parameters model, and the ones of two kinds.

Nothing here imports torch: a recipe is validated with these models alone.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    """Strict, closed parameter model: typed fields, unknown keys rejected.

    Every field must carry a description (``Field(description=...)``); the recipe
    reference and ``dcframe plugins show`` print it, and the contract tests in
    :mod:`dcframe.testing` fail a component whose fields lack one.
    """

    # allow_inf_nan=False: no parameter means anything at inf or nan, and such values only
    # crash (or silently train to NaN) much later; refusing them here covers plugins too.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(Params):
    """For components that take no parameters."""


class BackboneParams(Params):
    """Parameters every backbone accepts."""

    sobel: bool = Field(
        True, description="Feed the net fixed Sobel gradients of a grayscale image (paper: on)."
    )
    small_input: bool = Field(
        False,
        description="Small-image variant (32x32 input, e.g. CIFAR, digits) instead of 224x224.",
    )


class ClustererParams(Params):
    """Parameters every clusterer accepts."""

    k: int = Field(10000, ge=2, description="Number of clusters (paper: 10000 on ImageNet).")
