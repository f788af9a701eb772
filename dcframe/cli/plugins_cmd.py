"""``dcframe plugins``: what components are installed, where they come from, what they take.

Entry-point loading obeys ``DCFRAME_DISABLE_PLUGIN_AUTOLOAD`` (any non-empty value: only
built-ins) and ``DCFRAME_BLOCK_PLUGINS`` (comma-separated entry-point or distribution names
not to import); see :mod:`dcframe.core.registry`.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Annotated, Any

import typer

from dcframe.cli.tables import print_table
from dcframe.core.errors import UserError
from dcframe.core.registry import BLOCK_ENV, DISABLE_AUTOLOAD_ENV

# The registries (and through them the component interfaces and torch) are imported by
# the commands, so that `dcframe --help` stays fast.

STATUS_STYLE = {"ok": "green", "failed": "red", "blocked": "yellow"}
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of a table.")
]

app = typer.Typer(no_args_is_help=True, help="List and describe components and plugins.")


@app.command(
    "list",
    epilog=(
        f"Environment: {DISABLE_AUTOLOAD_ENV}=1 loads no plugins (only built-ins); "
        f"{BLOCK_ENV}=NAME,... skips the plugins with those entry-point or distribution "
        "names (e.g. dcframe-timm), listed as blocked."
    ),
)
def list_components(json_output: JsonFlag = False) -> None:
    """Every component per kind, with its origin and status (ok, failed, blocked).

    A plugin that fails to import or register is listed as failed, with the reason, and
    only recipes naming it fail. To debug a broken environment, set
    DCFRAME_DISABLE_PLUGIN_AUTOLOAD=1 (no plugins are loaded, only built-ins) or
    DCFRAME_BLOCK_PLUGINS=NAME,... (entry-point or distribution names not to import).
    """
    from dcframe.core import kinds
    from dcframe.core.describe import summary_text

    rows: list[dict[str, str]] = []
    for registry in kinds.ALL:
        for entry in registry:
            # The docstring's whole first paragraph, not its first source line.
            description = summary_text(entry.cls)
            rows.append(_row(registry.kind, entry.name, str(entry.origin), "ok", description))
        for failed in registry.failed:
            rows.append(
                _row(registry.kind, failed.name, str(failed.origin), failed.status, failed.message)
            )
    disabled = any(r.autoload_disabled for r in kinds.ALL)
    if json_output:
        print(json.dumps({"components": rows, "plugins_loaded": not disabled}, indent=2))
        return
    headers = ["kind", "name", "origin", "status", "description"]
    print_table(
        "dcframe components", headers, [[r[h] for h in headers] for r in rows], STATUS_STYLE
    )
    if disabled:
        print(
            f"Plugins are not loaded: {DISABLE_AUTOLOAD_ENV} is set, so only built-in "
            "components are listed; unset it to load installed plugins.",
            file=sys.stderr,
        )


def _row(kind: str, name: str, origin: str, status: str, description: str) -> dict[str, str]:
    return {
        "kind": kind,
        "name": name,
        "origin": origin,
        "status": status,
        "description": description,
    }


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Component name, e.g. faiss-kmeans.")],
    kind: Annotated[
        str | None, typer.Option(help="Kind, when several kinds share the name.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Description, origin and parameters (type, default, bounds) of one component."""
    from dcframe.core import kinds
    from dcframe.core.describe import doc_text, parameter_rows, plain_text
    from dcframe.recipe.sections import SECTION_MIXINS

    matches = [r for r in kinds.find_anywhere(name) if kind in (None, r.kind)]
    if not matches:
        known = sorted({e.name for r in kinds.ALL for e in r})
        raise UserError(f"no component called {name!r}. Installed: {', '.join(known)}")
    if len(matches) > 1:
        found_in = ", ".join(r.kind for r in matches)
        raise UserError(f"{name!r} is a {found_in}; choose with --kind")
    registry = matches[0]
    entry = registry.get(name)  # raises the plugin's load error when it failed
    # The fields the recipe's section adds to every component of its kind (clusterer.extra_k,
    # data.on_bad_image, ...) are the component's parameters in a recipe too: listed, marked.
    mixin = SECTION_MIXINS.get(registry.section)
    added = f"(added by the [{registry.section}] section, for every {registry.kind}) "
    parameters = [
        {"parameter": "name", "type": "str", "default": "required", "bounds": "",
         "description": f"{entry.name!r} selects this {registry.kind}", "added_by": ""},
        *({"parameter": row.name, "type": row.type, "default": row.default,
           "bounds": row.bounds, "description": plain_text(row.description), "added_by": ""}
          for row in parameter_rows(entry.params_model)),
        *({"parameter": row.name, "type": row.type, "default": row.default,
           "bounds": row.bounds, "description": added + plain_text(row.description),
           "added_by": f"[{registry.section}] section"}
          for row in (parameter_rows(mixin) if mixin is not None else [])
          if row.name not in entry.params_model.model_fields),
    ]  # fmt: skip
    if json_output:
        document: dict[str, Any] = {
            "kind": registry.kind,
            "name": entry.name,
            "origin": str(entry.origin),
            "section": registry.section,
            "doc": inspect.getdoc(entry.cls) or "",
            "parameters": parameters,
        }
        print(json.dumps(document, indent=2))
        return
    print(f"{registry.kind} {entry.name}  from {entry.origin}")
    print(doc_text(entry.cls))
    headers = ["parameter", "type", "default", "bounds", "description"]
    rows = [[p[h] for h in headers] for p in parameters]
    print_table(f"[{registry.section}] parameters", headers, rows)
