"""Exceptions that separate the user's mistakes (exit code 2) from dcframe's bugs (exit code 1)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad recipe, missing folder, impossible request.

    The CLI prints the message (no traceback unless ``--debug``) and exits with code 2.
    The message must name the problem and, where possible, the fix.
    """


class RecipeError(UserError):
    """A recipe failed validation; ``problems`` holds one ``path.to.field: message`` per issue."""

    def __init__(self, problems: list[str], source: str = "recipe") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}\n{lines}")


class UnknownComponentError(UserError):
    """A name that no registry entry carries."""


class PluginLoadError(UserError):
    """A plugin that failed to import or registered something invalid, used by a recipe."""


class BadImageError(UserError):
    """An image file that cannot be decoded into an RGB picture.

    Datasets raise it from ``image()``; the engine applies the recipe's bad-image policy
    (``data.on_bad_image``): stop at once naming the file, or leave the image out.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read image {path!r} ({reason}); remove or replace the file")


class RunStopped(UserError):
    """The run was asked to stop (SIGTERM, SIGUSR1) and saved a state to resume from.

    The CLI exits with ``128 + signal number``, the shell's convention for a process ended
    by that signal, so a scheduler sees the run did not finish. ``mid_epoch``: the stop
    saved the epoch so far (else the last checkpoint is the one to resume from).
    ``agreed``: every process of the run stops alike, so the main process's message
    speaks for all.
    """

    def __init__(
        self, signum: int, message: str, mid_epoch: bool = False, agreed: bool = True
    ) -> None:
        self.exit_code = 128 + signum
        self.mid_epoch = mid_epoch
        self.agreed = agreed
        super().__init__(message)


class MainProcessStopped(UserError):
    """Raised on the other processes of a distributed run when the main process stopped with
    an error; the main process has printed the message already."""


def reworded(error: UserError, message: str) -> UserError:
    """``error`` with a new message (context added), of a kind the CLI treats the same way."""
    if isinstance(error, RunStopped):
        return RunStopped(error.exit_code - 128, message, error.mid_epoch, error.agreed)
    if isinstance(error, MainProcessStopped):
        return MainProcessStopped(message)
    return UserError(message)
