"""ResNets in torchvision's architecture: ResNet-50, the backbone of later DeepCluster
reproductions, and ResNet-18, the usual network of short self-supervised benchmarks."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dcframe.components.backbones.conv_fc import (
    input_channels,
    input_layer,
    run_taps,
)
from dcframe.components.builtin_params import small_stem
from dcframe.core.interfaces import Backbone, BackboneParams

#: The trunk's modules in forward order; they keep torchvision's names (and state-dict keys).
_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class TorchvisionResNet(Backbone):
    """A torchvision ResNet trunk behind the backbone contract; a subclass names the
    architecture (``architecture``) and documents it."""

    #: The torchvision constructor's name ("resnet50").
    architecture: ClassVar[str]

    tap_names: ClassVar[tuple[str, ...]] = ("conv1", "layer1", "layer2", "layer3", "layer4")
    any_input_size: ClassVar[bool] = True  # global average pooling before the feature

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
        self.input_size = params.input_size
        import torchvision  # slow import: only when a ResNet is built

        net = getattr(torchvision.models, self.architecture)(weights=None)
        self.feature_dim = net.fc.in_features
        self.sobel = input_layer(params)
        if params.sobel or params.small_input:
            kernel, stride, padding = (
                small_stem(params.input_size, kernel_at_32=3) if params.small_input else (7, 2, 3)
            )
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


class ResNet50(TorchvisionResNet):
    """ResNet-50 (torchvision layout); clusters on the 2048-d global-average-pooled output.

    The trunk is ``torchvision.models.resnet50(weights=None)`` without its ``fc``: the modules
    ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` ... ``layer4`` keep torchvision's
    names, so a torchvision state dict (minus ``fc``) loads by key when the stem matches.
    :meth:`embed` global-average-pools ``layer4`` to a 2048-d vector (``feature_dim``); there
    is no ReLU before the top layer (:meth:`head_activation` is the identity).

    Changes from torchvision:

    * ``sobel=True``: a frozen ``sobel`` module (grayscale + Sobel filters) comes first and
      the stem conv takes its 2 channels instead of RGB.
    * Small-input layout (``small_input=True``, CIFAR style): the stem max-pool is removed
      (``maxpool`` is an identity) and the stem conv's stride grows with the input so that
      its maps keep about 32 px: stride ``s = input_size // 32`` (at least 1), kernel
      ``(2s+1)x(2s+1)``, padding ``s`` (3x3 stride 1 pad 1 up to 63 px, instead of
      torchvision's 7x7 stride 2 pad 3). The kernel grows with the stride so that it never
      skips pixels. Its maps are ``ceil(input_size / s)`` px: 32 at every multiple of 32,
      up to 63 in between.

    Any ``input_size`` (16 to 1024 px; left out, 224, or 32 with ``small_input``): every
    conv and pool is padded and :meth:`embed` averages ``layer4`` over whatever extent it
    has, so both layouts take every size and ``feature_dim`` stays 2048. Spatial sizes of
    the taps (conv1, layer1, layer2, layer3, layer4):

    | input | torchvision layout | small-input layout |
    |---|---|---|
    | 32 | 16, 8, 4, 2, 1 | 32, 32, 16, 8, 4 |
    | 64 | 32, 16, 8, 4, 2 | conv1 5x5 stride 2: 32, 32, 16, 8, 4 |
    | 96 | 48, 24, 12, 6, 3 | conv1 7x7 stride 3: 32, 32, 16, 8, 4 |
    | 128 | 64, 32, 16, 8, 4 | conv1 9x9 stride 4: 32, 32, 16, 8, 4 |
    | 224 | 112, 56, 28, 14, 7 | conv1 15x15 stride 7: 32, 32, 16, 8, 4 |

    Init: torchvision's own (convs Kaiming normal, fan-out, i.e. N(0, sqrt(2 / (kh*kw*out))),
    the same as the paper's conv init; BatchNorm weight 1, bias 0); a replaced stem conv gets
    the same init. Taps: ``conv1`` (stem after its ReLU, before the max-pool) and the outputs of
    ``layer1`` ... ``layer4``.
    """

    architecture = "resnet50"


class ResNet18(TorchvisionResNet):
    """ResNet-18 (torchvision layout); clusters on the 512-d global-average-pooled output.

    With ``small_input = true`` at 32 px this is the CIFAR ResNet-18 of short
    self-supervised benchmarks: a 3x3 stride-1 stem conv and no stem max-pool, so
    ``layer1`` ... ``layer4`` see 32, 16, 8 and 4 px maps. Everything else is as for
    :class:`ResNet50` (the stem rule at other sizes, Sobel input, init, taps, torchvision's
    module names and state-dict keys), with basic blocks instead of bottlenecks: 64, 128,
    256 and 512 channels, ``feature_dim`` 512.
    """

    architecture = "resnet18"
