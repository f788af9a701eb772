"""The ``dcframe eval`` flags that name a run's own data, for the messages that suggest some.

A run's ``recipe.toml`` (or the recipe a random init is compared with) says which images
the run clustered; a message that asks for labelled data suggests those, not a dataset
the run never saw: ``--data sklearn-digits`` for a digits run, ``--train-dir ROOT
--val-dir VAL_DIR`` for an image-folder run. Only the ``[data]`` table is read, and a
recipe without one gives no suggestion.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcframe.core import kinds
from dcframe.core.errors import UserError

#: What evaluation asks of the validation images when the run's recipe cannot say.
VAL_DIR = "VAL_DIR"


def data_flags(table: Mapping[str, Any]) -> str | None:
    """The eval flags for the dataset of a recipe's ``[data]`` table, None without a name.

    The dataset's parameters that differ from its defaults become ``--data-set KEY=VALUE``
    (``split`` left out: evaluation reads ``split=train`` for training and ``split=test``
    for validation); an image folder becomes ``--train-dir ROOT --val-dir VAL_DIR``; a
    dataset without a split needs other validation images, ``--val-set KEY=VALUE``.
    """
    name = table.get("name")
    if not isinstance(name, str) or not name:
        return None
    try:
        fields = kinds.datasets.get(name).params_model.model_fields
    except UserError:  # a plugin dataset not installed here: its name alone
        return f"--data {shlex.quote(name)}"
    values = {
        key: value
        for key, value in table.items()
        if key in fields and key != "split" and value != fields[key].default
    }
    if name == "imagefolder" and "root" in values:
        root = values.pop("root")
        flags = ["--train-dir", _text(root), "--val-dir", VAL_DIR]
    else:
        flags = ["--data", name]
    for key, value in values.items():
        flags += ["--data-set", f"{key}={_text(value)}"]
    if name != "imagefolder" and "split" not in fields:
        flags += ["--val-set", "KEY=VALUE"]
    return " ".join(flag if flag in (VAL_DIR, "KEY=VALUE") else shlex.quote(flag) for flag in flags)


def recipe_data_flags(recipe: Path | None) -> str | None:
    """:func:`data_flags` of ``recipe``'s ``[data]`` table; None without a readable one."""
    from dcframe.recipe import read_toml

    if recipe is None:
        return None
    try:
        table = read_toml(recipe).get("data")
    except (UserError, OSError):
        return None
    return data_flags(table) if isinstance(table, dict) else None


def _text(value: Any) -> str:
    """A TOML value as the command line gives it: text as is, the rest as TOML writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
