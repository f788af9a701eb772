"""VGG-16 with BatchNorm, the DeepCluster paper's deeper backbone."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from dcframe.components.backbones.conv_fc import (
    ConvFcBackbone,
    conv_bn_relu,
    scaled,
)
from dcframe.components.builtin_params import VGG16_LAYOUT, VGG_CONV, VGG_POOL, VGG16Params
from dcframe.core.interfaces import BackboneParams


class VGG16(ConvFcBackbone):
    """VGG-16 with BatchNorm; clusters on fc7 before its ReLU.

    Layout (224x224 input, ``width`` 1; module names match the official checkpoints):

    * ``sobel``: frozen grayscale + Sobel filters, 3 -> 2 channels (identity if ``sobel=False``).
    * ``features``: 13 convs 3x3 pad 1, each followed by BatchNorm and ReLU, in blocks of
      64, 64 | 128, 128 | 256 x3 | 512 x3 | 512 x3, each block closed by a 2x2 stride-2
      max-pool: 224 -> 112 -> 56 -> 28 -> 14 -> 7.
    * ``classifier``: fc6 Linear(512*7*7 = 25088, fc_dim), ReLU, Dropout (0.5 by default), fc7
      Linear(fc_dim, fc_dim) (one dropout only, as in the paper). :meth:`embed` returns fc7
      before its ReLU, which is :meth:`head_activation` (``feature_dim = fc_dim``).

    ``width`` multiplies every conv's channel count (rounded, at least 1).

    Any ``input_size`` (16 to 1024 px; left out, 224, or 32 with ``small_input``): the
    layers are the same at every size and the five max-pools halve it (rounding down), so
    fc6's input width is 512 x (``input_size`` // 32)^2; below 32 px nothing would be left,
    so such sizes are refused. ``small_input`` changes no layer (it only makes the size
    default to 32: the usual CIFAR VGG, fc6 taking 512 inputs).

    Spatial sizes (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 taps; fc6 inputs at ``width``
    1):

    | input | taps | fc6 inputs |
    |---|---|---|
    | 32 | 32, 16, 8, 4, 2 | 512x1x1 = 512 |
    | 64 | 64, 32, 16, 8, 4 | 512x2x2 = 2048 |
    | 96 | 96, 48, 24, 12, 6 | 512x3x3 = 4608 |
    | 128 | 128, 64, 32, 16, 8 | 512x4x4 = 8192 |
    | 224 | 224, 112, 56, 28, 14 | 512x7x7 = 25088 |

    Init: as AlexNet (conv N(0, sqrt(2 / (kh*kw*out_channels))), BatchNorm 1/0, linear
    N(0, 0.01), biases 0). Taps ``conv1_1`` ... ``conv5_3`` (block_index, 13 in all) are the
    outputs of each conv's ReLU, before pooling.
    """

    Params: ClassVar[type[BackboneParams]] = VGG16Params
    tap_names: ClassVar[tuple[str, ...]] = (
        "conv1_1", "conv1_2",
        "conv2_1", "conv2_2",
        "conv3_1", "conv3_2", "conv3_3",
        "conv4_1", "conv4_2", "conv4_3",
        "conv5_1", "conv5_2", "conv5_3",
    )  # fmt: skip

    def _make_features(self, in_channels: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for entry in VGG16_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(*VGG_POOL))
            else:
                out_channels = scaled(int(entry), self.params.width)
                layers += conv_bn_relu(in_channels, out_channels, *VGG_CONV)
                in_channels = out_channels
        return nn.Sequential(*layers)

    def _make_classifier(self, flat_dim: int, fc_dim: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(flat_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(self.params.dropout),
            nn.Linear(fc_dim, fc_dim),
        )
