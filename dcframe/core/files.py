"""Writing files so that a crash, a kill or a full disk never leaves a damaged one behind.

Every file a run writes goes through :func:`atomic_write_bytes`: the bytes go to a temporary
sibling (``.<name>.<pid>.<token>.tmp``) that replaces the target only once it is complete
and synced, so a reader sees either the old file or the new one. A kill can leave the
temporary file behind; :func:`remove_temporaries` clears them when the next run starts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from dcframe.core.errors import UserError

TEMPORARY_GLOB = ".*.tmp"

# Failures the user fixes on their side (space, quota, permissions), not bugs of dcframe.
_USER_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long",
}
# What to do about each of them, given how the command writes elsewhere ("{}").
_FIXES = {
    errno.ENOSPC: "free some space or choose another folder with {}",
    errno.EDQUOT: "free some space or choose another folder with {}",
    errno.EROFS: "choose a folder on a writable file system with {}",
    errno.ENAMETOOLONG: "choose a shorter path with {}",
}
_PERMISSIONS_FIX = "check the folder's permissions or choose another folder with {}"

#: How a run writes elsewhere: the advice unless the caller names its own option.
RUN_ELSEWHERE = "--set run.output_dir=..."


class _RecordingFile:
    """A binary file that remembers the first OSError its ``write`` raised.

    Some writers (``torch.save``'s zip writer) replace the OSError of a failed write by a
    generic error ("unexpected pos"); the recorded one says what really happened (ENOSPC).
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self._handle.flush()


def user_error_for(error: OSError, action: str, elsewhere: str = RUN_ELSEWHERE) -> UserError | None:
    """A :class:`UserError` for an OSError the user can fix (full disk, permissions), or None.

    Args:
        error: The failure.
        action: What was being done, e.g. "writing runs/x/checkpoint.pt".
        elsewhere: The command's way to write somewhere else, e.g. "--out".
    """
    reason = _USER_ERRNOS.get(error.errno or 0)
    if reason is None:
        return None
    fix = _FIXES.get(error.errno or 0, _PERMISSIONS_FIX).format(elsewhere)
    return UserError(f"{reason} while {action}; {fix}")


def atomic_write_bytes(
    path: Path, write: Callable[[Any], object], elsewhere: str = RUN_ELSEWHERE
) -> None:
    """Write ``path`` through a temporary sibling, then rename it over the target.

    ``write`` receives a binary file. The file gets the permissions of any file the user
    creates (0666 less the umask). On failure the target is untouched, the temporary file is
    removed, and a full disk or a permission problem is raised as a :class:`UserError`
    naming the file, the cause and the fix (``elsewhere``: the command's way to write
    somewhere else, e.g. "--out"; by default a run's).
    """
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open with mode 0o666 applies the umask, unlike tempfile.mkstemp's fixed 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            recording = _RecordingFile(handle)
            try:
                write(recording)
                handle.flush()
                os.fsync(handle.fileno())
            except Exception as error:
                if recording.error is not None and recording.error is not error:
                    raise recording.error from error
                raise
        os.replace(tmp, path)
    except BaseException as error:
        _remove_quietly(tmp)
        if isinstance(error, OSError):
            friendly = user_error_for(error, f"writing {path}", elsewhere)
            if friendly is not None:
                raise friendly from error
        raise


def _remove_quietly(tmp: Path) -> None:
    # The clean-up of a failed write must not hide why it failed: on a read-only file
    # system even removing a file that was never created fails (EROFS). A temporary file
    # left behind is removed by the next run (remove_temporaries).
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def remove_temporaries(*folders: Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folders``; returns them."""
    removed = []
    for folder in folders:
        if folder.is_dir():
            for tmp in folder.glob(TEMPORARY_GLOB):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed
