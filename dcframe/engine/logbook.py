"""The run's loggers together: what the engine calls, once, for all of them.

The first logger is the run's record (``jsonl``); its errors (a full disk) stop the run
like any other write. Any other logger, a plugin's especially, can only break itself: an
error in it is warned about and that logger is left out for the rest of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dcframe.core.interfaces import EpochRecord, Logger, RunInfo
from dcframe.core.progress import Reporter


@dataclass
class Logbook:
    """The run's loggers (record first), on the main process; empty on the others."""

    loggers: list[Logger]
    names: list[str]
    reporter: Reporter = field(default_factory=Reporter)

    def open(self, run: RunInfo) -> None:
        """Open every logger; a logger that cannot start (a package missing) stops the run
        before its first epoch, with the logger's own message."""
        for logger in self.loggers:
            logger.open(run)

    def step(self, epoch: int, step: int, global_step: int, values: dict[str, float]) -> None:
        self._each(lambda logger: logger.step(epoch, step, global_step, values), record=False)

    def epoch(self, record: EpochRecord) -> None:
        self._each(lambda logger: logger.epoch(record))

    def close(self) -> None:
        self._each(lambda logger: logger.close(), record=False)

    def _each(self, call: Callable[[Logger], None], record: bool = True) -> None:
        for position, logger in enumerate(list(self.loggers)):
            if position == 0 and record:
                call(logger)  # the record: its failure is the run's
                continue
            try:
                call(logger)
            except Exception as error:
                index = self.loggers.index(logger)
                name = self.names.pop(index)
                self.loggers.pop(index)
                self.reporter.warn(
                    f"logger {name!r} failed ({type(error).__name__}: {error}); the run goes on "
                    "without it"
                )
