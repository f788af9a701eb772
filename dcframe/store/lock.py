"""An exclusive lock on a run directory, so that two runs never write into the same one.

The lock is an ``flock`` on ``<run>/.lock``: the kernel releases it when the holding
process ends, however it ends, so a lock left by a killed run never blocks the next one.
The file itself only tells who holds the lock (pid, host, start time), for the message
the second run prints. ``flock`` is advisory and local: it is reliable on local disks and
on most network file systems that support it (NFSv4, Lustre with ``flock`` mounts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from dcframe.core.errors import UserError

LOCK_FILE = ".lock"


def _holder(handle: int) -> str:
    """Who holds the lock, from the file's contents (best effort)."""
    try:
        info = json.loads(os.pread(handle, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (which must exist) for the ``with`` block.

    Raises:
        UserError: another process holds it; the message names that process.
    """
    handle = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"run directory {str(folder)!r} is in use by another dcframe run "
                f"({_holder(handle)}); wait for it to finish, or pick another name, e.g. "
                "--set run.name=<new-name>"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)  # nobody holds it any more
    finally:
        os.close(handle)  # releases the flock
