"""Recipe problems worded for people: one ``path.to.field: message`` line per problem,
pointing into the TOML, with suggestions and the valid choices."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from pydantic_core import ErrorDetails

from dcframe.core.params import Params
from dcframe.recipe.sections import COMPONENT_SECTIONS, SCHEMA_VERSION, SECTION_MIXINS


def too_deep(what: str) -> str:
    return f"{what}: arrays or tables nested too deeply; a recipe needs at most a few levels"


def _lookup(raw: Any, loc: tuple[int | str, ...]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> tuple[str, tuple[int | str, ...]]:
    """Dotted recipe path of a pydantic location, without the union tags pydantic inserts.

    Returns the printable path and the location in the raw data it points to.
    """
    text = ""
    real: list[int | str] = []
    for part in loc:
        node = _lookup(raw, tuple(real))
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(node, dict) and part not in node and node.get("name") == part:
            continue  # discriminator tag pydantic adds to the location
        else:
            key = _key_text(part)
            text += f".{key}" if text else key
        real.append(part)
    return text or "(top level)", tuple(real)


def _key_text(key: str) -> str:
    """A key as printed in a path: bare when plain, else quoted (newlines escaped) and cut."""
    if _BARE_KEY.fullmatch(key):
        return cut(key, 60)
    # Escape what is not printable, line breaks such as U+0085 included, so a key never
    # splits a problem over two lines.
    quoted = json.dumps(key, ensure_ascii=False)
    return cut("".join(c if c.isprintable() else ascii(c)[1:-1] for c in quoted), 60)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, the cut marked by an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def short(value: Any) -> str:
    """A value's repr for a message, cut so that a 100 KB input is not echoed back."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"  # repr of a huge int is slow or fails
    return cut(repr(value))


def explain(detail: ErrorDetails, raw: dict[str, Any], model: type[Params]) -> str:
    path, real = _path(detail["loc"], raw)
    kind = detail["type"]
    registry = COMPONENT_SECTIONS.get(str(real[0])) if real else None
    if kind == "union_tag_invalid" and registry is not None:
        name = cut(str(_lookup(raw, (*real, "name"))), 60)
        failed = [f for f in registry.failed if f.name == name]
        if failed:
            return f"{path}.name: {registry.failure_message(failed[0])}"
        return f"{path}.name: " + registry.unknown_message(name, f"{path}.name")
    if kind == "union_tag_not_found" and registry is not None:
        return f"{path}: missing 'name'; choose a {registry.kind}: {', '.join(registry.names())}"
    if kind == "extra_forbidden":
        parent = _lookup(raw, real[:-1])
        return f"{path}: unknown key{_key_hint(str(real[-1]), real[:-1], parent, model)}"
    if kind == "missing" and path == "schema_version":
        return f"schema_version: required; add `schema_version = {SCHEMA_VERSION}` at the top"
    if kind == "missing":
        return f"{path}: required"
    got = detail.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {short(got)})"
    message = detail["msg"].removeprefix("Value error, ")  # our validators' own sentences
    return f"{path}: {cut(message, 200)}{shown}"


def _key_hint(key: str, parent_loc: tuple[int | str, ...], parent: Any, model: type[Params]) -> str:
    """'; did you mean ...' plus the valid keys of the table an unknown key sits in."""
    valid = sorted(_valid_keys(parent_loc, parent, model))
    if not valid:
        return ""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{hint} Valid keys: {', '.join(valid)}"


def _valid_keys(parent_loc: tuple[int | str, ...], parent: Any, model: type[Params]) -> set[str]:
    if not parent_loc:
        return set(model.model_fields)
    section = str(parent_loc[0])
    if section in COMPONENT_SECTIONS and isinstance(parent, dict):
        registry = COMPONENT_SECTIONS[section]
        mixin = SECTION_MIXINS.get(section)
        common = {"name", *(mixin.model_fields if mixin else ())}
        if parent.get("name") in registry:
            return common | set(registry.get(parent["name"]).params_model.model_fields)
        return common
    field = model.model_fields.get(section)
    annotation = field.annotation if field else None
    if isinstance(annotation, type) and issubclass(annotation, Params):
        return set(annotation.model_fields)
    return set()
