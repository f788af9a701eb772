"""A ``dcframe`` process that SIGKILLs itself at a chosen point, for the kill tests.

Usage: ``python tests/kill_child.py STAGE CALL dcframe-arguments...``. The process runs
the real command line and kills itself, with SIGKILL (no cleanup, no ``finally``), in the
middle of the CALL-th (1-based) occurrence of STAGE:

* ``extract``: after two batches of an extraction pass;
* ``cluster``: on entering the k-means;
* ``train``: after two batches of a training pass;
* ``checkpoint``: after writing the first 1,000 bytes of ``checkpoint.pt``;
* ``sigterm``: like ``train``, but the process sends itself SIGTERM (a scheduler's stop
  request) instead, and goes on.

Under torchrun, only the process whose rank is ``$KILL_RANK`` (default: every one) acts.
``$KILL_SIGNAL`` (e.g. ``SIGINT``) replaces the signal, and ``$KILL_TARGET`` its receiver:
``self`` (the default), ``group`` (the process group: the DataLoader workers too, as from
``timeout`` or Slurm) or ``launcher`` (the parent, torchrun, which passes it on to every
rank's group).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from dcframe.cli import main
from dcframe.components.clusterers import FaissKMeans
from dcframe.data.loading import TRAINING, RunLoader
from dcframe.engine import extraction

calls = {"n": 0}
SIGNAL = {"sig": signal.SIGKILL}


def die_on_call(wanted: int) -> bool:
    calls["n"] += 1
    mine = os.environ.get("KILL_RANK") in (None, os.environ.get("RANK", "0"))
    return mine and calls["n"] == wanted


def kill() -> None:
    target = os.environ.get("KILL_TARGET", "self")
    if target == "group":
        os.killpg(os.getpgid(0), SIGNAL["sig"])
    else:
        os.kill(os.getppid() if target == "launcher" else os.getpid(), SIGNAL["sig"])


def after_two_batches(original: Callable[..., Any], wanted: int) -> Callable[..., Any]:
    """``original`` (a generator function) dying after two items of its ``wanted``-th call."""

    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        return dying(original(*args, **kwargs), die_on_call(wanted))

    return wrapper


def dying(items: Iterator[Any], now: bool) -> Iterator[Any]:
    for i, item in enumerate(items):
        if now and i == 2:
            kill()
        yield item


class DyingLoader:
    """A DataLoader (length and all) whose iteration may die after two batches."""

    def __init__(self, loader: Any, now: bool) -> None:
        self.loader, self.now = loader, now

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return dying(iter(self.loader), self.now)


def install(stage: str, wanted: int) -> None:
    if stage == "extract":
        extraction.embed_batches = after_two_batches(extraction.embed_batches, wanted)
    elif stage in ("train", "sigterm"):
        if stage == "sigterm" and "KILL_SIGNAL" not in os.environ:
            SIGNAL["sig"] = signal.SIGTERM
        load = RunLoader.load

        def dying_load(self: RunLoader, batches: Any) -> Any:
            loader = load(self, batches)
            training_pass = bool(batches) and batches[0][0].view == TRAINING
            return DyingLoader(loader, die_on_call(wanted)) if training_pass else loader

        RunLoader.load = dying_load  # type: ignore[method-assign]
    elif stage == "cluster":
        original = FaissKMeans.cluster

        def cluster(self: FaissKMeans, *args: Any, **kwargs: Any) -> Any:
            if die_on_call(wanted):
                kill()
            return original(self, *args, **kwargs)

        FaissKMeans.cluster = cluster  # type: ignore[method-assign]
    elif stage == "checkpoint":
        save = torch.save

        def half_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if getattr(f, "write", None) is not None and die_on_call(wanted):
                f.write(b"\0" * 1000)
                f.flush()
                kill()
            save(obj, f, *args, **kwargs)

        torch.save = half_save
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    if "KILL_SIGNAL" in os.environ:
        SIGNAL["sig"] = signal.Signals[os.environ["KILL_SIGNAL"]]
    install(sys.argv[1], int(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
