"""``dcframe recipe``: check, show and describe recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dcframe import recipe as recipes

app = typer.Typer(no_args_is_help=True, help="Validate, resolve and describe recipes.")

RecipePath = Annotated[Path, typer.Argument(help="Recipe file (.toml).", show_default=False)]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a value: section.key=value (repeatable).", metavar="KEY=VALUE"
    ),
]


def _component(section: Any) -> str:
    values = section.model_dump()
    name = values.pop("name")
    args = ", ".join(f"{k}={v!r}" for k, v in values.items())
    return f"{name}({args})"


@app.command("check")
def check(recipe: RecipePath, overrides: Overrides = None) -> None:
    """Validate a recipe and print a summary (exit code 0 when valid, 2 otherwise)."""
    resolved = recipes.load(recipe, overrides)
    # Values and the path are the user's text: escaped, so "[/x]" is not read as rich markup.
    title = f"{escape(str(recipe))}: valid"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key in ("run", "optimizer"):
        table.add_row(key, escape(", ".join(f"{k}={v!r}" for k, v in getattr(resolved, key))))
    for key in ("data", "backbone", "clusterer", "sampler"):
        table.add_row(key, escape(_component(getattr(resolved, key))))
    table.add_row("preprocess", escape(" -> ".join(_component(p) for p in resolved.preprocess)))
    Console().print(table)


@app.command("show")
def show(recipe: RecipePath, overrides: Overrides = None) -> None:
    """Print the fully resolved recipe (every default filled in) as TOML."""
    typer.echo(recipes.dumps(recipes.load(recipe, overrides)), nl=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of recipes, including installed plugins' parameters."""
    typer.echo(json.dumps(recipes.recipe_model().model_json_schema(), indent=2))
