"""``--set section.key=value`` overrides, applied to a recipe's raw tables before validation."""

from __future__ import annotations

import tomllib
from typing import Any

import tomli_w

from dcframe.core.errors import UserError
from dcframe.recipe.sections import SECTION_DEFAULTS
from dcframe.recipe.wording import cut, short, too_deep


def parse_value(text: str) -> Any:
    """A ``--set`` value read as TOML (``3`` int, ``0.5`` float, ``true``, ``[1, 2]``),
    or kept as a plain string when it is not TOML (``faiss-kmeans``, ``/data/train``).

    Raises:
        UserError: the value is TOML nested too deeply to read.
    """
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except RecursionError:
        raise UserError(too_deep(f"--set value {short(text)}")) from None
    except ValueError:  # not TOML (or an integer of over 4300 digits): a plain string
        return text


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value`` (list items by index: ``preprocess.0.dim=128``) in place."""
    key, sep, text = override.partition("=")
    parts = [p for p in key.replace("[", ".").replace("]", "").split(".") if p]
    shown = short(override)
    if not sep or not parts:
        raise UserError(f"--set {shown}: expected section.key=value, e.g. run.epochs=10")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, parts[: depth + 1], override)]
        else:
            if part not in node:
                default = SECTION_DEFAULTS.get(part) if depth == 0 else None
                node[part] = _copy(default) if default is not None else {}
            node = node[part]
        # Checked after list items too: an earlier --set may have made one a plain value.
        if not isinstance(node, dict | list):
            where = cut(".".join(parts[: depth + 1]), 80)
            raise UserError(f"--set {shown}: {where} is not a table")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, parts, override)] = parse_value(text)
    else:
        node[last] = parse_value(text)


def _list_index(node: list[Any], part: str, path: list[str], override: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        where = cut(".".join(path[:-1]), 80)
        raise UserError(
            f"--set {short(override)}: {where} has items 0..{len(node) - 1}, not {short(part)}"
        )
    return int(part)


def _copy(value: Any) -> Any:
    return tomllib.loads(tomli_w.dumps({"v": value}))["v"]
