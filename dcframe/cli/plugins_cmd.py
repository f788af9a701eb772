"""``dcframe plugins``: what components are installed, where they come from, what they take.

Entry-point loading obeys ``DCFRAME_DISABLE_PLUGIN_AUTOLOAD`` (any non-empty value: only
built-ins) and ``DCFRAME_BLOCK_PLUGINS`` (comma-separated entry-point or distribution names
not to import); see :mod:`dcframe.registry`.
"""

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
from dcframe.registry import BLOCK_ENV, DISABLE_AUTOLOAD_ENV

STATUS_STYLE = {"failed": "red", "blocked": "yellow"}

app = typer.Typer(no_args_is_help=True, help="List and describe components and plugins.")


@app.command(
    "list",
    epilog=(
        f"Environment: {DISABLE_AUTOLOAD_ENV}=1 loads no plugins (only built-ins); "
        f"{BLOCK_ENV}=NAME,... skips the plugins with those entry-point or distribution "
        "names (e.g. dcframe-timm), listed as blocked."
    ),
)
def list_components() -> None:
    """Every component per kind, with its origin and status (ok, failed, blocked).

    A plugin that fails to import or register is listed as failed, with the reason, and
    only recipes naming it fail. To debug a broken environment, set
    DCFRAME_DISABLE_PLUGIN_AUTOLOAD=1 (no plugins are loaded, only built-ins) or
    DCFRAME_BLOCK_PLUGINS=NAME,... (entry-point or distribution names not to import).
    """
    table = Table(title="dcframe components")
    for column in ("kind", "name", "origin", "status", "description"):
        table.add_column(column, overflow="fold")
    for registry in registries.ALL:
        for entry in registry:
            table.add_row(
                registry.kind, entry.name, str(entry.origin), "[green]ok[/green]", entry.summary
            )
        for failed in registry.failed:
            style = STATUS_STYLE[failed.status]
            table.add_row(
                registry.kind,
                failed.name,
                str(failed.origin),
                f"[{style}]{failed.status}[/{style}]",
                escape(failed.message),
            )
    console = Console()
    console.print(table)
    if any(r.autoload_disabled for r in registries.ALL):
        console.print(
            f"Plugins are not loaded: {DISABLE_AUTOLOAD_ENV} is set, so only built-in "
            "components are listed; unset it to load installed plugins."
        )


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
