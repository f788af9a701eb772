"""The base class of every component's parameters model, and the ones of two kinds.

Nothing here imports torch: a recipe is validated with these models alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Default input side of the paper's networks, and of the small-input variants.
FULL_INPUT_SIZE = 224
SMALL_INPUT_SIZE = 32
#: Bounds of ``input_size`` (the timm plugin's too): at 16 px the paper's ResNet-50 still
#: ends on 1x1 maps; 1024 px is 21 times the pixels of a 224 px image.
MIN_INPUT_SIZE = 16
MAX_INPUT_SIZE = 1024


class Params(BaseModel):
    """Strict, closed parameter model: typed fields, unknown keys rejected.

    Every field must carry a description (``Field(description=...)``); the recipe
    reference and ``dcframe plugins show`` print it, and the contract tests in
    :mod:`dcframe.core.contract` fail a component whose fields lack one.
    """

    # allow_inf_nan=False: no parameter means anything at inf or nan, and such values only
    # crash (or silently train to NaN) much later; refusing them here covers plugins too.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(Params):
    """For components that take no parameters."""


class BackboneParams(Params):
    """Parameters every backbone accepts.

    ``input_size`` follows one rule: a value given explicitly is used as is; left out, it is
    32 when ``small_input`` is true and 224 otherwise. The rule is applied while the
    parameters are validated, so a run's resolved recipe records the size actually used.
    """

    sobel: bool = Field(
        True, description="Feed the net fixed Sobel gradients of a grayscale image (paper: on)."
    )
    small_input: bool = Field(
        False,
        description="Small-image layout (e.g. CIFAR, digits: each backbone's entry says what "
        "changes); also makes input_size default to 32 instead of 224.",
    )
    input_size: int = Field(
        FULL_INPUT_SIZE,
        ge=MIN_INPUT_SIZE,
        le=MAX_INPUT_SIZE,
        description="Side of the square images the network takes (the data are resized to it); "
        "left out: 32 with small_input, else 224.",
    )

    @model_validator(mode="before")
    @classmethod
    def _small_input_size(cls, data: Any) -> Any:
        # Before validation, because only the raw input tells a left-out input_size from an
        # explicit 224; afterwards both look the same.
        if isinstance(data, dict) and "input_size" not in data and data.get("small_input") is True:
            return {**data, "input_size": SMALL_INPUT_SIZE}
        return data


class ClustererParams(Params):
    """Parameters every clusterer accepts."""

    k: int = Field(10000, ge=2, description="Number of clusters (paper: 10000 on ImageNet).")
