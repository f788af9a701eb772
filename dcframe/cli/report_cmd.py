"""``dcframe report``: one self-contained HTML page about a run (see :mod:`dcframe.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR",
            help="Run directory (<run.output_dir>/<run.name>); may still be running.",
            show_default=False,
        ),
    ],
    epoch: Annotated[
        int | None,
        typer.Option(
            "--epoch", help="Epoch whose clusters are shown (default: the last finished)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: RUN_DIR/report.html)."),
    ] = None,
) -> None:
    """Write an HTML report of a run: curves, cluster galleries, stability, transforms."""
    # Imported here: matplotlib and torch load only when a report is made.
    from dcframe.core.registry import plugin_output_to_stderr
    from dcframe.report import write_report

    with plugin_output_to_stderr():  # stdout is the page's path only, for scripts
        page = write_report(run_dir, epoch, out)
    typer.echo(str(page))
