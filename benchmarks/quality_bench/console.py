"""What the benchmark tells the user on stderr: progress lines and its one-message errors."""

from __future__ import annotations

import sys


class BenchmarkError(Exception):
    """Bad input or a failing ``dcframe`` command: reported in one message, exit code 2."""


def log(message: str) -> None:
    """One progress line on stderr, flushed so that it shows while a subprocess runs."""
    print(message, file=sys.stderr, flush=True)
