"""Human-readable descriptions of parameter models, shared by the CLI and the docs generator."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types as at
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dcframe.core.params import Params

_BOUNDS = ((at.Ge, ">="), (at.Gt, ">"), (at.Le, "<="), (at.Lt, "<"))


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


def bounds_of(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for cls, symbol in _BOUNDS:
            if isinstance(meta, cls):
                parts.append(f"{symbol} {getattr(meta, cls.__name__.lower())}")
        if isinstance(meta, at.MinLen):
            parts.append(f"length >= {meta.min_length}")
    return ", ".join(parts)


def default_of(field: FieldInfo) -> str:
    if field.default_factory is not None:
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
