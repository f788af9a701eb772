"""The ``timm`` backbone: a timm image model, built untrained, as a DeepCluster trunk."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from dcframe.plugin import (
    FULL_INPUT_SIZE,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    Backbone,
    BackboneParams,
    Sobel,
    UserError,
)

#: How many close architecture names an unknown ``backbone.model`` error suggests.
_SUGGESTIONS = 8


class TimmParams(BackboneParams):
    """Parameters of the ``timm`` backbone.

    ``input_size`` follows dcframe's rule for every backbone (:class:`BackboneParams`):
    left out, 32 with ``small_input``, else 224, filled in at validation.
    """

    model: str = Field(
        "resnet18",
        min_length=1,
        description=(
            "timm architecture, one of timm.list_models() (e.g. resnet18, "
            "vit_tiny_patch16_224, convnext_atto, efficientnet_b0); built untrained."
        ),
    )
    input_size: int = Field(
        FULL_INPUT_SIZE,
        ge=MIN_INPUT_SIZE,
        le=MAX_INPUT_SIZE,
        description=(
            "Side of the square input images; left out: 32 with small_input, else 224. "
            "Transformers are built for it (timm's img_size)."
        ),
    )
    drop_rate: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="timm's drop_rate: dropout on the pooled feature while training (0: none).",
    )


class TimmBackbone(Backbone):
    """Any timm image model, built untrained; clusters on its pooled pre-logits feature.

    The net is ``timm.create_model(model, pretrained=False, num_classes=0, ...)``, kept as
    the ``model`` submodule (so its state-dict keys are timm's, prefixed ``model.``); timm
    never downloads anything for it. With ``sobel=True`` a frozen ``sobel`` module (grayscale
    + Sobel gradients, as in the paper) comes first and the net is built for 2 input
    channels (timm adapts its stem to ``in_chans``). Nets whose constructor takes
    ``img_size`` (ViT, DeiT, BEiT, EVA, Swin, CaiT, CoaT, ...: a fixed token grid or
    position table) are built for ``input_size``; the others (CNNs) pool globally and take
    any size. The architecture is otherwise timm's own: ``small_input`` only sets the
    default input size and, unlike the built-in ResNet-50, leaves the stem unchanged.
    Construction runs one blank image through the net, so an input size it cannot take is
    refused there rather than mid-run.

    :meth:`embed` is timm's pre-logits feature (``forward_features`` then
    ``forward_head(pre_logits=True)``): the globally pooled trunk output, passed through the
    head's pre-logits layers where the model has some (MobileNetV3's ``conv_head``, VGG's
    ``pre_logits``), so ``feature_dim`` (measured by that blank image) is timm's
    ``head_hidden_size``, not always ``num_features``. ``drop_rate`` is timm's head dropout
    on that feature while training. :meth:`head_activation` is the identity.

    Taps are the feature maps listed in timm's ``feature_info`` (ResNet: ``act1``,
    ``layer1`` ... ``layer4``; ViT: ``blocks.0`` ... ``blocks.11``; ConvNeXt: ``stages.0``
    ... ``stages.3``), named by their module, read with timm's ``forward_intermediates`` as
    (B, C, H, W) maps (vision-transformer tokens are reshaped to their grid). They depend on
    the architecture, so ``tap_names`` is set per instance.

    Raises:
        UserError: At construction: ``model`` is not a timm architecture (close names are
            suggested), timm cannot build it or run one image through it with these
            settings (its native input size is suggested), or it lacks the
            ``feature_info`` / ``forward_intermediates`` that taps need.
    """

    Params: ClassVar[type[BackboneParams]] = TimmParams
    params: TimmParams
    # An nn.Module with timm's model API (feature_info, forward_features, forward_head,
    # forward_intermediates), which no common base class declares.
    model: Any

    def __init__(self, params: TimmParams) -> None:
        super().__init__(params)
        self.input_size = params.input_size
        self.sobel = Sobel() if params.sobel else nn.Identity()
        self.model, self.feature_dim = build_model(params)
        modules = [info["module"] for info in self.model.feature_info]
        # The taps depend on the architecture chosen, so they cannot be a class attribute.
        self.tap_names = tap_names_for(modules)  # type: ignore[misc]
        self._tap_index = {name: i for i, name in enumerate(self.tap_names)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(self.sobel(x))
        return self.model.forward_head(features, pre_logits=True)

    def taps(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in names if name not in self._tap_index]
        if unknown:
            raise UserError(
                f"unknown tap(s) {unknown} for timm model {self.params.model!r}; "
                f"it has: {', '.join(self.tap_names)}"
            )
        if not names:
            return {}
        # forward_intermediates returns the maps in forward order, one per index asked for.
        indices = sorted({self._tap_index[name] for name in names})
        maps = self.model.forward_intermediates(
            self.sobel(x), indices=indices, intermediates_only=True, stop_early=True
        )
        by_index = dict(zip(indices, maps, strict=True))
        return {name: by_index[self._tap_index[name]] for name in names}


def build_model(params: TimmParams) -> tuple[Any, int]:
    """The untrained timm net these parameters describe, and the width of its feature.

    Returns:
        The headless net, sized to ``params.input_size``, in training mode, and the width of
        its pooled pre-logits feature, measured on one blank image.

    Raises:
        UserError: The name is not a timm architecture, timm cannot build the net with these
            settings or run it at this input size, or the net lacks ``feature_info`` /
            ``forward_intermediates``.
    """
    import timm  # slow import (about as slow as torch's): only when a timm model is built

    check_model_name(params.model, timm.list_models())
    channels = 2 if params.sobel else 3
    settings = (
        f"{params.input_size}x{params.input_size} input of {channels} channels"
        f" ({'Sobel gradients' if params.sobel else 'RGB'})"
    )
    # timm raises whatever its constructors and forward passes raise (TypeError, ValueError,
    # AssertionError, RuntimeError, ...) for settings an architecture does not support; all
    # of them come down to the recipe's choice of model and sizes.
    try:
        model = _create(params, channels)
    except Exception as error:
        raise UserError(
            f"backbone.model: timm cannot build {params.model!r} for {settings}: {_reason(error)}"
        ) from error
    if not getattr(model, "feature_info", None) or not hasattr(model, "forward_intermediates"):
        raise UserError(
            f"backbone.model: timm model {params.model!r} has no feature_info or "
            "forward_intermediates, which the taps are read from; choose another model or "
            "upgrade timm"
        )
    # One blank image through the net, in eval mode so that no statistics move: it fails here,
    # not mid-run, when the net cannot take this input size, and it measures the feature
    # width exactly (pre-logits layers can make it differ from num_features).
    model.eval()
    try:
        with torch.no_grad():
            blank = torch.zeros(1, channels, params.input_size, params.input_size)
            width = model.forward_head(model.forward_features(blank), pre_logits=True).shape[1]
    except Exception as error:
        native = getattr(model, "pretrained_cfg", {}).get("input_size", (FULL_INPUT_SIZE,))[-1]
        rgb_hint = ", or backbone.sobel = false (some models take RGB only)" if params.sobel else ""
        raise UserError(
            f"backbone: timm model {params.model!r} cannot run on {settings}: {_reason(error)}; "
            f"try backbone.input_size = {native} (its native size){rgb_hint}"
        ) from error
    model.train()
    return model, int(width)


def _create(params: TimmParams, channels: int) -> Any:
    """``timm.create_model`` for these parameters, passing the input size where it is taken."""
    import timm

    settings: dict[str, Any] = {
        "pretrained": False,
        "num_classes": 0,
        "in_chans": channels,
        "drop_rate": params.drop_rate,
    }
    try:
        # Nets with a fixed token grid or position table (ViT, Swin, CaiT, ...) are sized at
        # construction; the others (CNNs, which pool globally) reject the argument.
        return timm.create_model(params.model, img_size=params.input_size, **settings)
    except TypeError as error:
        if "img_size" not in str(error):
            raise
    return timm.create_model(params.model, **settings)


def _reason(error: Exception) -> str:
    """An exception as one phrase: its message without a final period, else its type."""
    return str(error).rstrip(".") or type(error).__name__


def check_model_name(name: str, available: Sequence[str]) -> None:
    """Refuse a name that is not one of timm's architectures, suggesting close ones.

    Args:
        name: The ``backbone.model`` value.
        available: Every architecture name (``timm.list_models()``).

    Raises:
        UserError: ``name`` is not in ``available``; a name with a pretrained tag
            (``resnet18.a1_in1k``) is refused too, naming its architecture.
    """
    if name in available:
        return
    architecture = name.split(".", 1)[0]
    if architecture != name and architecture in available:
        raise UserError(
            f"backbone.model: {name!r} names pretrained weights (the part after the dot), "
            f"which this backbone never loads; use the architecture {architecture!r}"
        )
    query = name.lower()
    # Prefixes catch short names ("vit_tiny" -> "vit_tiny_patch16_224") that a similarity
    # ratio ranks below unrelated names of similar length.
    prefixed = [n for n in available if n.startswith(query)]
    similar = difflib.get_close_matches(query, available, n=_SUGGESTIONS)
    close = list(dict.fromkeys([*prefixed, *similar]))[:_SUGGESTIONS]
    hint = f"close matches: {', '.join(close)}" if close else "no close match"
    raise UserError(
        f"backbone.model: {name!r} is not a timm architecture; {hint} "
        "(timm.list_models('pattern*') lists them all)"
    )


def tap_names_for(modules: Sequence[str]) -> tuple[str, ...]:
    """Tap names for the modules of timm's ``feature_info``, in its order.

    A tap is named by its module. A module listed several times (one module giving maps at
    several scales, as CoaT's ``parallel_blocks`` or CrossViT's branches) gets each entry's
    position in ``feature_info`` appended, ``parallel_blocks:1``, so that names stay unique.
    """
    counts = Counter(modules)
    return tuple(
        module if counts[module] == 1 else f"{module}:{i}" for i, module in enumerate(modules)
    )
