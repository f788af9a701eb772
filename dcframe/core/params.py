"""The base class of every component's parameters model, and the ones of two kinds.

Nothing here imports torch: a recipe is validated with these models alone.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

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

    :meth:`model_validate` reads plain data (a recipe's TOML tables, JSON) the way pydantic
    reads JSON: still strict, but each type is given in the form TOML and JSON write it,
    an array for a tuple or a set, a string for a path, a value for an enum. Constructing
    a model with keywords takes Python values, as usual.
    """

    # allow_inf_nan=False: no parameter means anything at inf or nan, and such values only
    # crash (or silently train to NaN) much later; refusing them here covers plugins too.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """Validate ``obj``; plain data (see the class) in pydantic's JSON mode.

        Strict mode in Python refuses a list for a ``tuple[str, ...]`` field, so a recipe
        could not set one; in JSON mode a JSON array is a tuple's own form. Doing it here,
        in the base that every parameters model, recipe section and plugin model derives from,
        covers every field of every component, nested models included.
        """
        text = None if options.get("from_attributes") else _as_json(obj)
        if text is None:  # Python objects (a Path, a date, a model): validated as they are
            return super().model_validate(obj, **options)
        options.pop("from_attributes", None)
        return cls.model_validate_json(text, **options)

    def recipe_table(self) -> dict[str, Any]:
        """The values as a recipe's TOML holds them, read back by :meth:`model_validate`:
        each in its JSON form, None left out (TOML has no null; the registry admits None
        only as a field's default, which reading the table back restores), sets sorted."""
        table: dict[str, Any] = to_jsonable_python(_sets_sorted(self.model_dump(exclude_none=True)))
        return table


def _as_json(obj: Any) -> bytes | None:
    """``obj`` as JSON text when it is a table of plain data, else None."""
    try:
        if not (isinstance(obj, dict) and _plain(obj)):
            return None
        # inf and nan as JSON's constants, so that allow_inf_nan refuses them by name.
        return to_json(obj, inf_nan_mode="constants")
    except PydanticSerializationError:
        # A string with lone surrogates (from a command line): the Python path reports it
        # as it always has.
        return None


def _sets_sorted(value: Any) -> Any:
    """``value`` with every set as a sorted list: a set's order changes from one process to
    the next, and the same recipe must always be written the same (``--resume`` compares)."""
    if isinstance(value, dict):
        return {key: _sets_sorted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_sets_sorted(item) for item in value)
    if isinstance(value, set | frozenset):
        return sorted((_sets_sorted(item) for item in value), key=lambda item: to_json(item))
    return value


#: Nesting beyond which data goes the Python way: pydantic's JSON parser stops at 200
#: levels with an error naming no field, and no parameter needs a tenth of this.
_MAX_JSON_DEPTH = 100


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds only what TOML and JSON share: strings, numbers, booleans,
    arrays and tables with string keys (a TOML date stays a date, refused by a str field
    rather than read as its text), nested at most ``_MAX_JSON_DEPTH`` levels."""
    if depth > _MAX_JSON_DEPTH:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(item, depth + 1) for item in value)
    return value is None or isinstance(value, str | int | float)


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
