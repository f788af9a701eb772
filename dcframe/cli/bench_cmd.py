"""``dcframe bench``: each stage of an epoch timed against its floor.

The measuring is :mod:`dcframe.tools.bench`; this module is its command line.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dcframe.cli.recipe_cmd import Overrides, RecipePath


def bench(
    recipe: RecipePath,
    overrides: Overrides = None,
    images: Annotated[
        int, typer.Option("--images", min=2, help="Images of the recipe's data to time on.")
    ] = 2000,
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="Times each pair runs; medians are reported.")
    ] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Time extraction, clustering and training against their floors, measured in this run."""
    # Imported here, not at the top, so that `dcframe --help` stays fast.
    from dcframe import recipe as recipes
    from dcframe.core.progress import Reporter
    from dcframe.core.registry import plugin_output_to_stderr
    from dcframe.tools.bench import bench as run_bench

    resolved = recipes.load(recipe, overrides)
    with plugin_output_to_stderr():  # the plugins' prints must not mix with the --json
        report = run_bench(resolved, images, repeat, Reporter(quiet=as_json))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    table = Table(
        title=f"{recipe}: {report.images} of {report.dataset_images} images, median of "
        f"{report.repeat}",
        title_justify="left",
    )
    for column in ("stage", "dcframe s", "floor", "floor s", "floor / dcframe"):
        table.add_column(column, justify="left" if column in ("stage", "floor") else "right")
    for row in report.rows:
        table.add_row(
            row.stage, f"{row.dcframe_s:.3f}", row.floor, f"{row.floor_s:.3f}", f"{row.ratio:.2f}"
        )
    console = Console()
    console.print(table)
    projection = report.epoch_projection_s
    console.print(
        f"projected epoch on all {report.dataset_images:,} images "
        f"({report.train_samples_per_epoch:,} training samples): "
        + ", ".join(f"{stage} {seconds:,.0f} s" for stage, seconds in projection.items())
    )
    console.print(f"decoding alone: {report.decode_images_per_s:,.0f} images/s on one core")
