"""Which trunk to load: a trained run or checkpoint, or a freshly initialised backbone.

Kept apart from :mod:`dcframe.store.trained`, which loads it, because the command line
validates these options without importing torch.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from dcframe.core.params import Params


class ModelOptions(Params):
    """What to evaluate: a trained run or checkpoint, or a freshly initialised backbone."""

    path: str | None = Field(
        None,
        min_length=1,
        description="Run directory, dcframe checkpoint file, or official DeepCluster "
        "checkpoint.pth.tar.",
    )
    random_init: str | None = Field(
        None,
        min_length=1,
        description="Evaluate a freshly initialised backbone of this name (the random-init "
        "baseline) instead of trained weights.",
    )
    epoch: int | None = Field(
        None,
        ge=0,
        description="With a run directory: evaluate checkpoints/epoch_NNNN.pt instead of the "
        "latest checkpoint.pt.",
    )
    recipe: str | None = Field(
        None,
        min_length=1,
        description="Recipe file whose backbone table gives the architecture (its other "
        "tables are ignored); not needed for a run directory, which has its own.",
    )
    overrides: tuple[str, ...] = Field(
        (),
        description="backbone.KEY=VALUE changes applied to the architecture last "
        "(e.g. backbone.small_input=true).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelOptions:
        if (self.path is None) == (self.random_init is None):
            raise ValueError(
                "give exactly one thing to evaluate: a RUN_DIR_OR_CHECKPOINT argument "
                "or --random-init BACKBONE"
            )
        if self.epoch is not None and self.path is None:
            raise ValueError("--epoch picks a checkpoint of a run directory; drop it")
        return self
