"""The learning rate at every training step of a run (``optimizer.schedule``).

The paper keeps the rate constant. The cosine schedule decays it from ``lr`` to 0 over the
run's training steps, the usual choice of later self-supervised methods; either one may
start with a linear warm-up. The rate is a function of the run's global step alone, so a
resumed run (even one stopped mid-epoch) continues on the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LearningRate:
    """``at(step)``: the rate of global training step ``step`` (0-based) of the run."""

    base: float
    schedule: str  # "constant" or "cosine"
    total_steps: int
    warmup_steps: int = 0

    @classmethod
    def from_recipe(cls, optimizer: Any, epochs: int, steps_per_epoch: int) -> LearningRate:
        """The schedule of a recipe's ``[optimizer]`` section over ``epochs`` epochs."""
        return cls(
            base=optimizer.lr,
            schedule=optimizer.schedule,
            total_steps=max(1, epochs * steps_per_epoch),
            warmup_steps=round(optimizer.warmup_epochs * steps_per_epoch),
        )

    @property
    def is_constant(self) -> bool:
        """True for the paper's setting: every step at ``base``."""
        return self.schedule == "constant" and self.warmup_steps == 0

    def at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.base
        # Cosine over the steps after the warm-up, reaching 0 one step past the last.
        done = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.base * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
