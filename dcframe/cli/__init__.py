"""The ``dcframe`` command line and its single error boundary.

User errors (:class:`~dcframe.core.errors.UserError`, bad command-line usage) print a short
message on stderr and exit with code 2; anything else is a bug: traceback, exit code 1.
Ctrl-C prints one line on stderr and exits with code 130; a second Ctrl-C ends the process
at once (exit code 130) rather than interrupting its clean-up.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer import _click  # typer's own copy of click, whose classes it uses
from typer.core import TyperGroup
from typer.exceptions import TyperException

from dcframe.cli import (
    bench_cmd,
    clusters_cmd,
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

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report a process ended by Ctrl-C

#: What is left after a Ctrl-C, by command; other commands leave nothing to continue.
_AFTER_INTERRUPT = {"run": "the run keeps its last saved checkpoint; continue with --resume"}


class _Interrupted(Exception):
    """A Ctrl-C during ``command``, on its way to :func:`main`.

    typer turns a KeyboardInterrupt into a silent exit code 130 before :func:`main` sees it;
    this exception passes typer unchanged, so that :func:`main` can say what happened.
    """

    def __init__(self, command: str | None) -> None:
        super().__init__(command)
        self.command = command

    @property
    def message(self) -> str:
        after = _AFTER_INTERRUPT.get(self.command or "")
        return "interrupted" + (f"; {after}" if after else "")


class _RootGroup(TyperGroup):
    """dcframe's root command: every subcommand runs inside its :meth:`invoke`."""

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            raise _Interrupted(ctx.invoked_subcommand) from interrupt


app = typer.Typer(
    name="dcframe",
    cls=_RootGroup,
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
app.command("clusters")(clusters_cmd.clusters)
app.command("assign")(clusters_cmd.assign)
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
        with _second_ctrl_c_exits():
            result = app(args=argv, prog_name="dcframe", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except _Interrupted as interrupted:
        err.print(f"[red]{interrupted.message}[/red]")
        return INTERRUPTED_EXIT_CODE
    except (typer.Abort, KeyboardInterrupt):  # before typer runs a command, or end of input
        err.print("[red]interrupted[/red]")
        return INTERRUPTED_EXIT_CODE
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
        if error.agreed and _rank() != "0":
            return error.exit_code  # every process stopped alike; the main one said so
        err.print(f"[yellow]{_ranked('stopped')}:[/yellow] {escape(str(error))}")
        return error.exit_code
    except UserError as error:
        if _options["debug"]:
            err.print_exception()
        title = "recipe error" if isinstance(error, RecipeError) else "error"
        err.print(f"[bold red]{_ranked(title)}:[/bold red] {escape(str(error))}")
        return 2
    except Exception:
        err.print_exception()
        err.print(
            "[bold red]internal error[/bold red]: this is a bug in dcframe or a plugin; "
            "please report it with the traceback above"
        )
        return 1
    return result if isinstance(result, int) else 0


def _rank() -> str:
    return os.environ.get("RANK", "0")


def _ranked(title: str) -> str:
    """``title``, naming the process when it is one of several other than the main one."""
    return title if _rank() == "0" else f"rank {_rank()}: {title}"


@contextmanager
def _second_ctrl_c_exits() -> Iterator[None]:
    """The first Ctrl-C raises KeyboardInterrupt as usual; any later one exits at once.

    After the first, the clean-up (loader workers joined, files closed, the message) may
    take a moment; a second Ctrl-C then would print tracebacks from the middle of it.
    Only in the main thread with Python's own handler in place (a command or a test may
    install its own), which is restored when no Ctrl-C came.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def first(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, _exit_at_once)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is first:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_at_once(signum: int, frame: FrameType | None) -> None:
    os._exit(INTERRUPTED_EXIT_CODE)  # no clean-up: it is what the user wants to skip


def entry() -> None:
    sys.exit(main())
