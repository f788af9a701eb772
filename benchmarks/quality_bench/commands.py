"""``dcframe``'s command line, run in subprocesses so the numbers are the ones a user gets."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .console import BenchmarkError

#: Lines of a failing command's stderr worth showing (the error is at the end).
STDERR_TAIL = 20


def set_args(overrides: Sequence[str]) -> list[str]:
    """``--set`` before each override, as ``dcframe run`` and ``dcframe recipe show`` take them."""
    return [arg for override in overrides for arg in ("--set", override)]


def dcframe(args: list[str], what: str) -> str:
    """Run ``python -m dcframe ARGS``; its stdout, or BenchmarkError with its stderr tail."""
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps its messages to the width
    done = subprocess.run(
        [sys.executable, "-m", "dcframe", *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL:])
        raise BenchmarkError(
            f"{what} failed (exit code {done.returncode}):\n  dcframe {' '.join(args)}\n{tail}"
        )
    return done.stdout


def resolved_recipe(recipe: Path, overrides: Sequence[str], what: str) -> dict[str, Any]:
    """The recipe with every default filled in (``dcframe recipe show``); validates it."""
    text = dcframe(["recipe", "show", str(recipe), *set_args(overrides)], f"{what}: the recipe")
    return tomllib.loads(text)
