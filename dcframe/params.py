"""The base class of every component's parameters model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Strict, closed parameter model: typed fields, unknown keys rejected.

    Every field must carry a description (``Field(description=...)``); the recipe
    reference and ``dcframe plugins show`` print it, and the contract tests in
    :mod:`dcframe.testing` fail a component whose fields lack one.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoParams(Params):
    """For components that take no parameters."""
