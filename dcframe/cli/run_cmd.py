"""``dcframe run``: train a DeepCluster model from a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcframe import engine
from dcframe import recipe as recipes
from dcframe.cli.recipe_cmd import Overrides
from dcframe.progress import Reporter


def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (.toml).", show_default=False)],
    overrides: Overrides = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run saved in the run directory.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summaries.")] = False,
) -> None:
    """Run DeepCluster as the recipe describes; writes everything to output_dir/name."""
    resolved = recipes.load(recipe, overrides)
    rundir = engine.run(resolved, resume=resume, reporter=Reporter(quiet=quiet))
    typer.echo(str(rundir.path))
