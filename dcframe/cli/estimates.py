"""The time a run will take on this machine, as ``recipe init``, ``recipe check`` and
``run`` print it before any work: a few seconds of measurement
(:func:`dcframe.tools.bench.estimate`)."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

#: Set (to anything but "" or "0") to skip the estimates, e.g. in scripts and test suites.
NO_ESTIMATE_ENV = "DCFRAME_NO_ESTIMATE"

NoEstimate = Annotated[
    bool,
    typer.Option(
        "--no-estimate",
        help=f"Skip the few seconds of measurement that estimate the run's time on this "
        f"machine (also: {NO_ESTIMATE_ENV}=1).",
    ),
]


def wanted(skip: bool) -> bool:
    return not skip and os.environ.get(NO_ESTIMATE_ENV, "") in ("", "0")


def print_estimate(recipe: Any, skip: bool = False) -> None:
    """Measure and print (on stderr) what ``recipe`` will cost here; a problem that stops
    the measuring (the data cannot be read, ...) is a warning: the command goes on."""
    if not wanted(skip):
        return
    from dcframe.core.errors import UserError
    from dcframe.core.progress import Reporter
    from dcframe.core.registry import plugin_output_to_stderr
    from dcframe.tools.bench import estimate

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    reporter = Reporter()
    try:
        with (
            plugin_output_to_stderr(),
            reporter.stage("estimating the run's time (--no-estimate skips it)"),
        ):
            found = estimate(recipe, reporter)
    except UserError as error:
        err.print(f"[yellow]warning:[/yellow] no time estimate: {escape(str(error))}")
        return
    err.print(escape(found.describe()))
