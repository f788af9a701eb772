"""The recipe layer: a run described by a TOML file, validated by pydantic.

``sections`` holds the recipe's own sections; ``model`` builds the validating model from
the registries and loads files; ``overrides`` applies ``--set``; ``wording`` turns
validation errors into ``path: message`` lines; ``starter`` writes a starter recipe for a
folder of images. The names below are the layer's surface for the rest of dcframe.
"""

from dcframe.recipe.model import dumps, load, read_toml, recipe_model, validate
from dcframe.recipe.overrides import apply_override, parse_value
from dcframe.recipe.sections import (
    COMPONENT_SECTIONS,
    MAX_SEED,
    SCHEMA_VERSION,
    AugmentSection,
    OptimizerSection,
    RunSection,
)

__all__ = [
    "COMPONENT_SECTIONS",
    "MAX_SEED",
    "SCHEMA_VERSION",
    "AugmentSection",
    "OptimizerSection",
    "RunSection",
    "apply_override",
    "dumps",
    "load",
    "parse_value",
    "read_toml",
    "recipe_model",
    "validate",
]
