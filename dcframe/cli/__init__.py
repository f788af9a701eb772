"""The ``dcframe`` command line and its single error boundary.

User errors (:class:`~dcframe.core.errors.UserError`, bad command-line usage) print a short
message on stderr and exit with code 2; anything else is a bug: traceback, exit code 1.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from dcframe.cli import (
    bench_cmd,
    data_cmd,
    doctor_cmd,
    eval_cmd,
    export_cmd,
    plugins_cmd,
    recipe_cmd,
    report_cmd,
    run_cmd,
)
from dcframe.core.errors import MainProcessStopped, RecipeError, RunStopped, UserError
from dcframe.core.version import __version__

app = typer.Typer(
    name="dcframe",
    help="DeepCluster: alternate k-means on CNN features with training the CNN on the clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
app.add_typer(recipe_cmd.app, name="recipe")
app.add_typer(plugins_cmd.app, name="plugins")
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(data_cmd.app, name="data")
app.command("run")(run_cmd.run)
app.command("bench")(bench_cmd.bench)
app.command("report")(report_cmd.report)
app.command("export")(export_cmd.export)
app.command("doctor")(doctor_cmd.doctor)

_options = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dcframe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for user errors too.")
    ] = False,
) -> None:
    _options["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (0, 1 or 2)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    _options["debug"] = False  # set by the root callback, once the arguments parse
    try:
        result = app(args=argv, prog_name="dcframe", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print(
            "[red]interrupted[/red]: a run keeps its last finished epoch; continue with --resume"
        )
        return 130
    except TyperException as error:  # usage errors: unknown option, missing argument
        show = getattr(error, "show", None)
        if show is not None:
            show()
        else:
            err.print(escape(error.format_message()))
        return 2
    except MainProcessStopped:
        return 2  # the main process printed the message; one copy is enough
    except RunStopped as error:
        err.print(f"[yellow]stopped:[/yellow] {escape(str(error))}")
        return error.exit_code
    except UserError as error:
        if _options["debug"]:
            err.print_exception()
        title = "recipe error" if isinstance(error, RecipeError) else "error"
        if os.environ.get("RANK", "0") != "0":  # one of several processes: say which
            title = f"rank {os.environ['RANK']}: {title}"
        err.print(f"[bold red]{title}:[/bold red] {escape(str(error))}")
        return 2
    except Exception:
        err.print_exception()
        err.print(
            "[bold red]internal error[/bold red]: this is a bug in dcframe or a plugin; "
            "please report it with the traceback above"
        )
        return 1
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
