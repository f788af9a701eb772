"""``dcframe plugins``: what components are installed, where they come from, what they take."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dcframe import registries
from dcframe.describe import parameter_rows
from dcframe.errors import UserError

app = typer.Typer(no_args_is_help=True, help="List and describe components and plugins.")


@app.command("list")
def list_components() -> None:
    """Every component per kind, with its origin and status (failed plugins included)."""
    table = Table(title="dcframe components")
    for column in ("kind", "name", "origin", "status", "description"):
        table.add_column(column, overflow="fold")
    for registry in registries.ALL:
        for entry in registry:
            table.add_row(
                registry.kind, entry.name, str(entry.origin), "[green]ok[/green]", entry.summary
            )
        for failed in registry.failed:
            table.add_row(
                registry.kind, failed.name, str(failed.origin), "[red]failed[/red]", failed.message
            )
    Console().print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Component name, e.g. faiss-kmeans.")],
    kind: Annotated[
        str | None, typer.Option(help="Kind, when several kinds share the name.")
    ] = None,
) -> None:
    """Description, origin and parameters (type, default, bounds) of one component."""
    matches = [r for r in registries.find_anywhere(name) if kind in (None, r.kind)]
    if not matches:
        known = sorted({e.name for r in registries.ALL for e in r})
        raise UserError(f"no component called {name!r}. Installed: {', '.join(known)}")
    if len(matches) > 1:
        kinds = ", ".join(r.kind for r in matches)
        raise UserError(f"{name!r} is a {kinds}; choose with --kind")
    registry = matches[0]
    entry = registry.get(name)  # raises the plugin's load error when it failed
    console = Console()
    console.print(f"[bold]{registry.kind} {entry.name}[/bold]  from {entry.origin}")
    console.print(inspect.getdoc(entry.cls) or "")
    table = Table(title=escape(f"[{registry.section}] parameters"), title_justify="left")
    for column in ("parameter", "type", "default", "bounds", "description"):
        table.add_column(column, overflow="fold")
    table.add_row("name", "str", "required", "", f"{entry.name!r} selects this {registry.kind}")
    for row in parameter_rows(entry.params_model):
        table.add_row(row.name, row.type, row.default, row.bounds, row.description)
    console.print(table)
