"""ResNet-50 (torchvision architecture), the backbone of later DeepCluster reproductions."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dcframe.components.backbones._common import (
    input_channels,
    input_layer,
    input_size,
    run_taps,
)
from dcframe.interfaces import Backbone, BackboneParams

#: The trunk's modules in forward order; they keep torchvision's names (and state-dict keys).
_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNet50(Backbone):
    """ResNet-50 (torchvision layout); clusters on the 2048-d global-average-pooled output.

    The trunk is ``torchvision.models.resnet50(weights=None)`` without its ``fc``: the modules
    ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` ... ``layer4`` keep torchvision's
    names, so a torchvision state dict (minus ``fc``) loads by key when the stem matches.
    :meth:`embed` global-average-pools ``layer4`` to a 2048-d vector (``feature_dim``); there
    is no ReLU before the top layer (:meth:`head_activation` is the identity).

    Changes from torchvision:

    * ``sobel=True``: a frozen ``sobel`` module (grayscale + Sobel filters) comes first and
      the stem conv takes its 2 channels instead of RGB.
    * Small-input variant (``small_input=True``, 32x32 input, CIFAR style): the stem conv is
      3x3 stride 1 pad 1 (instead of 7x7 stride 2 pad 3) and the stem max-pool is removed
      (``maxpool`` is an identity). Spatial sizes: 32 at conv1 and layer1, 16 at layer2,
      8 at layer3, 4 at layer4 (7x7 at layer4 for 224 input).

    Init: torchvision's own (convs Kaiming normal, fan-out, i.e. N(0, sqrt(2 / (kh*kw*out))),
    the same as the paper's conv init; BatchNorm weight 1, bias 0); a replaced stem conv gets
    the same init. Taps: ``conv1`` (stem after its ReLU, before the max-pool) and the outputs of
    ``layer1`` ... ``layer4``.
    """

    tap_names: ClassVar[tuple[str, ...]] = ("conv1", "layer1", "layer2", "layer3", "layer4")

    # Assigned from the torchvision net in __init__; declared for type checkers.
    conv1: nn.Conv2d
    bn1: nn.BatchNorm2d
    relu: nn.ReLU
    maxpool: nn.MaxPool2d | nn.Identity
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, params: BackboneParams) -> None:
        super().__init__(params)
        self.input_size = input_size(params)
        from torchvision.models import resnet50  # slow import: only when a ResNet is built

        net = resnet50(weights=None)
        self.feature_dim = net.fc.in_features
        self.sobel = input_layer(params)
        if params.sobel or params.small_input:
            kernel, stride, padding = (3, 1, 1) if params.small_input else (7, 2, 3)
            net.conv1 = nn.Conv2d(
                input_channels(params), 64, kernel, stride=stride, padding=padding, bias=False
            )
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        if params.small_input:
            net.maxpool = nn.Identity()
        for name in _STAGES:
            setattr(self, name, getattr(net, name))
        self._tap_index = {
            "conv1": _STAGES.index("relu"),
            **{f"layer{i}": _STAGES.index(f"layer{i}") for i in range(1, 5)},
        }

    def _stages(self) -> list[nn.Module]:
        return [getattr(self, name) for name in _STAGES]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sobel(x)
        for stage in self._stages():
            x = stage(x)
        return x.mean(dim=(2, 3))

    def taps(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        return run_taps(self._stages(), self._tap_index, self.sobel(x), names)
