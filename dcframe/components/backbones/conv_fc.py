"""What AlexNet, VGG16 and ResNet-50 share: sizes, the paper's init, taps, the conv+fc body."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dcframe.components.backbones.sobel import Sobel
from dcframe.components.builtin_params import ConvNetParams
from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone, BackboneParams


def input_layer(params: BackboneParams) -> nn.Module:
    """The frozen Sobel layer, or an identity (which has no state-dict keys) without Sobel."""
    return Sobel() if params.sobel else nn.Identity()


def input_channels(params: BackboneParams) -> int:
    """Channels reaching the first conv: the two Sobel gradients, or RGB."""
    return 2 if params.sobel else 3


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest integer, at least 1."""
    return max(1, round(channels * width))


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> list[nn.Module]:
    """Conv (with bias, as in the paper), BatchNorm, ReLU: one tappable conv layer."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def init_paper_weights(module: nn.Module) -> None:
    """The paper's init on every conv, BatchNorm and linear layer inside ``module``.

    Conv weights N(0, sqrt(2 / (kh * kw * out_channels))), conv bias 0; BatchNorm weight 1,
    bias 0; linear weights N(0, 0.01), bias 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / (kh * kw * m.out_channels)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            nn.init.zeros_(m.bias)


def flat_dim(features: nn.Sequential, side: int) -> int:
    """Size of the flattened output of a plain conv/pool stack on ``side`` x ``side`` input.

    Follows the shape arithmetic layer by layer, so no (slow, full-size) dummy forward pass
    is needed at construction.
    """
    channels = 0
    for m in features:
        if isinstance(m, nn.Conv2d | nn.MaxPool2d):
            kernel, stride, padding = (
                _first(getattr(m, name)) for name in ("kernel_size", "stride", "padding")
            )
            side = (side + 2 * padding - kernel) // stride + 1
        if isinstance(m, nn.Conv2d):
            channels = m.out_channels
    return channels * side * side


def _first(value: int | tuple[int, ...]) -> int:
    """One side of a square kernel/stride/padding given as int or tuple."""
    return value if isinstance(value, int) else value[0]


def run_taps(
    stages: nn.Sequential | Sequence[nn.Module],
    tap_index: Mapping[str, int],
    x: torch.Tensor,
    names: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Run ``stages`` in order on ``x`` and return the outputs of the named stages.

    Args:
        stages: The modules to chain (e.g. an ``nn.Sequential``).
        tap_index: Tap name -> index of the stage whose output it is.
        x: Input of the first stage.
        names: Taps wanted; the run stops after the last of them.

    Returns:
        Tap name -> feature map, in the order of ``names``.

    Raises:
        UserError: A name is not one of ``tap_index``.
    """
    unknown = [n for n in names if n not in tap_index]
    if unknown:
        raise UserError(f"unknown tap(s) {unknown}; this backbone has: {', '.join(tap_index)}")
    wanted = {tap_index[n] for n in names}
    outputs: dict[int, torch.Tensor] = {}
    for i in range(max(wanted, default=-1) + 1):
        x = stages[i](x)
        if i in wanted:
            outputs[i] = x
    return {n: outputs[tap_index[n]] for n in names}


class ConvFcBackbone(Backbone):
    """Optional Sobel, a conv/BN/ReLU/max-pool ``features`` stack, an fc6-fc7 ``classifier``.

    Subclasses only describe their two stacks. The clustering feature is fc7 before its
    ReLU (the last module of ``classifier`` is fc7); the ReLU is :meth:`head_activation`.
    ``tap_names`` name the conv layers in order; a tap is the output of that conv's ReLU,
    before any pooling.
    """

    Params: ClassVar[type[BackboneParams]] = ConvNetParams
    params: ConvNetParams

    def __init__(self, params: ConvNetParams) -> None:
        super().__init__(params)
        self.input_size = params.input_size
        self.feature_dim = params.fc_dim
        self.sobel = input_layer(params)
        self.features = self._make_features(input_channels(params))
        flat = flat_dim(self.features, self.input_size)
        self.classifier = self._make_classifier(flat, params.fc_dim)
        init_paper_weights(self.features)
        init_paper_weights(self.classifier)
        # Each conv has exactly one ReLU after it, so the i-th ReLU is the i-th conv's tap.
        relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        self._tap_index = dict(zip(self.tap_names, relus, strict=True))

    @abstractmethod
    def _make_features(self, in_channels: int) -> nn.Sequential:
        """The conv stack, each conv followed by BatchNorm and ReLU (see :func:`conv_bn_relu`)."""

    @abstractmethod
    def _make_classifier(self, flat_dim: int, fc_dim: int) -> nn.Sequential:
        """fc6 and fc7 with their ReLU/dropout, ending with fc7 (no final ReLU)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(self.sobel(x)), 1))

    def head_activation(self, features: torch.Tensor) -> torch.Tensor:
        return F.relu(features)

    def taps(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        return run_taps(self.features, self._tap_index, self.sobel(x), names)
