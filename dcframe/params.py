"""The base class of every component's parameters model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
