"""Human-readable descriptions of parameter models, shared by the CLI and the docs generator."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types as at
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dcframe.core.params import Params

_BOUNDS = ((at.Ge, ">="), (at.Gt, ">"), (at.Le, "<="), (at.Lt, "<"))
# A Sphinx role (:class:`~a.B`, :meth:`embed`) or a reStructuredText literal (``name``).
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def plain_text(text: str) -> str:
    """reStructuredText markup of a docstring or description as a terminal shows it:
    ``name`` and :meth:`name` become `name` (a ``~a.b.C`` role target becomes `C`)."""

    def role(match: re.Match[str]) -> str:
        short, target = match.groups()
        return f"`{target.rsplit('.', 1)[-1] if short else target}`"

    return _LITERAL.sub(r"`\1`", _ROLE.sub(role, text))


def first_paragraph(cls: type) -> str:
    """The first paragraph of a class docstring (which may run over several source lines),
    joined into one line: a component's description in listings, schemas and the docs."""
    doc = (inspect.getdoc(cls) or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


def summary_text(cls: type) -> str:
    """A component's one-line description, as :func:`plain_text`."""
    return plain_text(first_paragraph(cls))


def doc_text(cls: type) -> str:
    """A component's whole docstring, as :func:`plain_text`."""
    return plain_text(inspect.getdoc(cls) or "")


@dataclass(frozen=True)
class ParameterRow:
    """One parameter of a component or section, ready to print."""

    name: str
    type: str
    default: str
    bounds: str
    description: str


def type_name(annotation: Any) -> str:
    """Short spelling of a field's type: ``int``, ``'cpu' | 'cuda'``, ``list[float]``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # list[Annotated[int, Field(ge=2)]]: the bounds go apart
        return type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any], prefix: str = "") -> list[str]:
    parts = []
    for meta in metadata:
        if isinstance(meta, FieldInfo):  # Annotated[int, Field(ge=2)]
            parts += _bounds(meta.metadata, prefix)
        for cls, symbol in _BOUNDS:
            if isinstance(meta, cls):
                parts.append(f"{prefix}{symbol} {getattr(meta, cls.__name__.lower())}")
        if isinstance(meta, at.MinLen):
            parts.append(f"length >= {meta.min_length}")
        if isinstance(meta, at.MaxLen):
            parts.append(f"length <= {meta.max_length}")
    return parts


def bounds_of(field: FieldInfo) -> str:
    """The field's bounds (``>= 1, <= 8``), and those of a list's items (``items >= 2``)."""
    parts = _bounds(field.metadata)
    if typing.get_origin(field.annotation) is list:
        for item in typing.get_args(field.annotation):
            if typing.get_origin(item) is typing.Annotated:
                parts += _bounds(list(typing.get_args(item)[1:]), "items ")
    return ", ".join(parts)


def default_of(field: FieldInfo) -> str:
    if field.default_factory is not None:
        if field.default_factory is list:
            return "[]"
        return "(table)"
    if field.default is PydanticUndefined:
        return "required"
    return json.dumps(field.default)


def parameter_rows(model: type[Params]) -> list[ParameterRow]:
    """Every field of ``model`` with its type, default, bounds and description."""
    return [
        ParameterRow(
            name=name,
            type=type_name(field.annotation),
            default=default_of(field),
            bounds=bounds_of(field),
            description=field.description or "",
        )
        for name, field in model.model_fields.items()
    ]
