"""dcframe-timm: timm image models, built untrained, as dcframe backbones.

Registered under the name ``timm`` in the ``dcframe.backbones`` entry-point group; the
recipe's ``backbone.model`` picks the architecture. timm itself is imported only when a
model is built, so listing dcframe's plugins stays fast.
"""

from __future__ import annotations

from dcframe.plugin import FULL_INPUT_SIZE, SMALL_INPUT_SIZE
from dcframe_timm.backbone import (
    TimmBackbone,
    TimmParams,
    build_model,
    check_model_name,
    tap_names_for,
)

__all__ = [
    "FULL_INPUT_SIZE",
    "SMALL_INPUT_SIZE",
    "TimmBackbone",
    "TimmParams",
    "build_model",
    "check_model_name",
    "tap_names_for",
]
