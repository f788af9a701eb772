"""``dcframe run``: train a DeepCluster model from a recipe (in one process, or many)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dcframe.cli.estimates import NoEstimate, print_estimate
from dcframe.cli.recipe_cmd import Overrides


def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (.toml).", show_default=False)],
    overrides: Overrides = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run saved in the run directory.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summaries.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Processes on this machine (one per GPU): starts them with torchrun's "
            "launcher; for several machines run torchrun yourself.",
        ),
    ] = 1,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Write the run's report (report.html in the run directory) at the end.",
        ),
    ] = True,
    no_estimate: NoEstimate = False,
) -> None:
    """Run DeepCluster as the recipe describes; writes everything to output_dir/name."""
    # Imported here, not at the top, so that `dcframe --help` stays fast; the recipe is read
    # before the engine (and torch) is imported, so that a mistyped path is answered at once.
    from dcframe import recipe as recipes

    resolved = recipes.load(recipe, overrides)  # a bad recipe fails here, before any launch

    from dcframe import engine
    from dcframe.core.progress import Reporter
    from dcframe.core.registry import plugin_output_to_stderr

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        arguments = [str(recipe), *(f"--set={o}" for o in overrides or [])]
        arguments += ["--resume"] * resume + ["--quiet"] * quiet + ["--no-report"] * (not report)
        raise typer.Exit(_launch(nproc, arguments))
    reporter = Reporter(quiet=quiet)
    rank_0 = int(os.environ.get("RANK", "0")) == 0
    if not (quiet or resume or "WORLD_SIZE" in os.environ):  # a fresh run in one process
        print_estimate(resolved, no_estimate)
    started = time.perf_counter()
    # stdout holds the run directory only, for scripts: the plugins' prints go to stderr.
    with plugin_output_to_stderr():
        rundir = engine.run(resolved, resume=resume, reporter=reporter)
        if rank_0:
            page = _write_report(rundir.path, reporter) if report else None
            reporter.summary(rundir.path, rundir.metrics(), time.perf_counter() - started, page)
    if rank_0:
        typer.echo(str(rundir.path))


def _write_report(run_dir: Path, reporter: Any) -> Path | None:
    """The report of the finished run; a failure to make it is a warning, not the run's."""
    from dcframe.core.errors import UserError
    from dcframe.report import write_report

    try:
        return write_report(run_dir)
    except (UserError, OSError) as error:
        reporter.warn(f"no report written ({error}); try dcframe report {run_dir}")
        return None


def _launch(nproc: int, arguments: list[str]) -> int:
    """``torchrun --standalone --nproc-per-node=N -m dcframe run ARGUMENTS``; its exit code
    (the first failed process's, whose message that process has printed; 128 + N when a
    stop signal N reached the launcher, which has passed it on to every process)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    command = ["--standalone", f"--nproc-per-node={nproc}", "-m", "dcframe", "run", *arguments]
    try:
        torchrun(get_args_parser().parse_args(command))
    except ChildFailedError as failed:
        _, first = failed.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as stopped:
        return 128 + int(stopped.sigval)
    return 0
