"""``dcframe run``: train a DeepCluster model from a recipe (in one process, or many)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

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
) -> None:
    """Run DeepCluster as the recipe describes; writes everything to output_dir/name."""
    # Imported here, not at the top, so that `dcframe --help` stays fast.
    from dcframe import engine
    from dcframe import recipe as recipes
    from dcframe.progress import Reporter

    resolved = recipes.load(recipe, overrides)  # a bad recipe fails here, before any launch
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        arguments = [str(recipe), *(f"--set={o}" for o in overrides or [])]
        arguments += ["--resume"] * resume + ["--quiet"] * quiet
        raise typer.Exit(_launch(nproc, arguments))
    rundir = engine.run(resolved, resume=resume, reporter=Reporter(quiet=quiet))
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(str(rundir.path))


def _launch(nproc: int, arguments: list[str]) -> int:
    """``torchrun --standalone --nproc-per-node=N -m dcframe run ARGUMENTS``; its exit code
    (the first failed process's, whose message that process has printed)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    command = ["--standalone", f"--nproc-per-node={nproc}", "-m", "dcframe", "run", *arguments]
    try:
        torchrun(get_args_parser().parse_args(command))
    except ChildFailedError as failed:
        _, first = failed.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    return 0
