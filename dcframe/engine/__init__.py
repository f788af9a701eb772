"""The engine layer: the DeepCluster protocol and everything an epoch runs.

:func:`dcframe.engine.run` (in ``runner``) is the door: it opens, resumes, loops over
epochs and finishes a run. ``protocol`` holds one epoch in the paper's order; ``setup``
builds the recipe's components and checks them against the data and the machine;
``extraction``, ``epoch_features``, ``training``, ``top_init``, ``schedule``,
``checkpointing``, ``logbook`` and ``galleries`` are the steps' machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcframe.engine.runner import run

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    # PEP 562: the runner imports torch and every step; the engine's modules that only
    # need one of them (the evaluation's extraction, say) should not load them all.
    if name == "run":
        from dcframe.engine.runner import run

        return run
    raise AttributeError(f"module 'dcframe.engine' has no attribute {name!r}")
