"""``dcframe recipe``: check, show and describe recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dcframe.cli.estimates import NoEstimate, print_estimate

# dcframe.recipe is imported inside each command: `dcframe --help` needs none of it.

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
def check(recipe: RecipePath, overrides: Overrides = None, no_estimate: NoEstimate = False) -> None:
    """Validate a recipe and print a summary (exit code 0 when valid, 2 otherwise), then
    the time a run of it will take on this machine (a few seconds of measurement)."""
    from dcframe import recipe as recipes

    resolved = recipes.load(recipe, overrides)
    # Values and the path are the user's text: escaped, so "[/x]" is not read as rich markup.
    title = f"{escape(str(recipe))}: valid"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    table.add_row("method", escape(_component(resolved.method)))
    for key in ("run", "optimizer", "augment"):
        table.add_row(key, escape(", ".join(f"{k}={v!r}" for k, v in getattr(resolved, key))))
    for key in ("data", "backbone", "clusterer", "sampler"):
        table.add_row(key, escape(_component(getattr(resolved, key))))
    table.add_row("preprocess", escape(" -> ".join(_component(p) for p in resolved.preprocess)))
    Console().print(table)
    print_estimate(resolved, no_estimate)


@app.command("show")
def show(recipe: RecipePath, overrides: Overrides = None) -> None:
    """Print the fully resolved recipe (every default filled in) as TOML."""
    from dcframe import recipe as recipes
    from dcframe.core.registry import plugin_output_to_stderr

    with plugin_output_to_stderr():  # plugins' prints (at import, in validators) must not mix in
        text = recipes.dumps(recipes.load(recipe, overrides))
    typer.echo(text, nl=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of recipes, including installed plugins' parameters."""
    from dcframe import recipe as recipes
    from dcframe.core.registry import plugin_output_to_stderr

    with plugin_output_to_stderr():  # plugins' prints (at import, in validators) must not mix in
        schema = recipes.recipe_model().model_json_schema()
    typer.echo(json.dumps(schema, indent=2))


@app.command("init")
def init(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder of images (class sub-folders or flat).", show_default=False),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Recipe file to write (must not exist).")
    ] = Path("recipe.toml"),
    no_estimate: NoEstimate = False,
) -> None:
    """Write a commented starter recipe for a folder of images: k, input size, network
    width, PCA dim, epochs and caches chosen from the image count, the class sub-folders
    and the image sizes; then print the time a run of it will take on this machine."""
    from dcframe import recipe as recipes
    from dcframe.recipe.starter import write_starter_recipe

    found, choices = write_starter_recipe(folder, out)
    w, h = found.median_size
    labels = f"{len(found.classes)} classes" if found.classes else "no class sub-folders"
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"{found.images:,} images, {labels}, median size {w}x{h}: k={choices.k}, "
        f"input {choices.input_size}x{choices.input_size}, width {choices.width}, "
        f"PCA dim {choices.pca_dim}, {choices.epochs} epochs"
        + (f", caches {choices.cache_gib} GiB" if choices.cache_gib else "")
        + (", bf16" if choices.bf16 else "")
    )
    console.print(f"wrote {escape(str(out))} (valid); next: dcframe run {escape(str(out))}")
    print_estimate(recipes.load(out), no_estimate)
