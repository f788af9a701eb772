"""Stop requests: a scheduler's or a user's signal that ends a run with a state to resume from.

SIGTERM and SIGUSR1 (a scheduler's time limit or preemption notice) and SIGINT (Ctrl-C) all
mean the same: finish the training step in progress, save a checkpoint, exit with ``128 +
the signal's number``. Only the run's main thread acts on them. Its DataLoader workers
ignore them (:func:`leave_stops_to_the_run`): Slurm, ``timeout``, torchrun and a terminal
signal the whole process group, and a worker that died of the signal would end the run
with a crash instead of a checkpoint; the run shuts its workers down itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dcframe.core.errors import RunStopped

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
# A second Ctrl-C aborts at once, unless it comes this soon after the first: torchrun and a
# terminal both pass one keypress on, so a process may receive the same SIGINT twice.
SAME_KEYPRESS_S = 1.0


def leave_stops_to_the_run(worker_id: int = 0) -> None:
    """A DataLoader worker's initialiser: ignore the stop signals the run handles.

    A worker still ends when the run closes its loader, and on its own when the run's
    process is gone (torch's watchdog), so ignoring them leaves nothing behind.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


@dataclass
class StopRequest:
    """A stop signal received by this process: the run stops at the next training step
    (or at the end of the stage in progress) after saving a state to resume from.

    Attributes:
        signum: The first stop signal received; None while there was none.
        since: When it came (``time.monotonic``).
    """

    signum: int | None = None
    since: float = 0.0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Catch the stop signals for the block (only the main thread may install handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum, self.since = signum, time.monotonic()
            if signum == signal.SIGINT and os.environ.get("RANK", "0") == "0":
                sys.stderr.write(
                    "\nCtrl-C: stopping after the training step in progress (or at the end of "
                    "this extraction or clustering) with a checkpoint to resume from; "
                    "press Ctrl-C again to abort without one\n"
                )
        elif signum == signal.SIGINT and time.monotonic() - self.since > SAME_KEYPRESS_S:
            raise KeyboardInterrupt

    def stopped(self, where: str, mid_epoch: bool = False, agreed: bool = True) -> RunStopped:
        """The error that ends the run; the signal may have reached another process only.
        ``mid_epoch``: a checkpoint of the epoch so far was saved; ``agreed``: every process
        stops here (see :class:`RunStopped`)."""
        self.signum = self.signum or signal.SIGTERM
        name = signal.Signals(self.signum).name
        saved = " (checkpoint.pt saved there)" if mid_epoch else ""
        return RunStopped(
            self.signum,
            f"stopped by {name} {where}{saved}; continue the run with --resume",
            mid_epoch,
            agreed,
        )
