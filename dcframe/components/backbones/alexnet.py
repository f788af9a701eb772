"""AlexNet with BatchNorm, the DeepCluster paper's main backbone."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from dcframe.components.backbones.conv_fc import (
    ConvFcBackbone,
    conv_bn_relu,
    scaled,
)
from dcframe.components.builtin_params import AlexNetParams
from dcframe.core.interfaces import BackboneParams


class AlexNet(ConvFcBackbone):
    """AlexNet with BatchNorm (the paper's variant); clusters on fc7 before its ReLU.

    Layout (224x224 input, ``width`` 1; the modules are named as in the official
    checkpoints, so those load by key):

    * ``sobel``: frozen grayscale + Sobel filters, 3 -> 2 channels (identity if ``sobel=False``).
    * ``features``: conv1 96 11x11 stride 4 pad 2, max-pool; conv2 256 5x5 pad 2, max-pool;
      conv3 384 3x3 pad 1; conv4 384 3x3 pad 1; conv5 256 3x3 pad 1, max-pool. Every conv is
      followed by BatchNorm and ReLU (no LRN); max-pools are 3x3 stride 2.
      Spatial sizes: 224 -> 55 -> 27 -> 27 -> 13 -> 13 -> 13 -> 13 -> 6.
    * ``classifier``: Dropout (``dropout``, 0.5), fc6 Linear(256*6*6 = 9216, fc_dim), ReLU, Dropout,
      fc7 Linear(fc_dim, fc_dim). The fc7 ReLU is :meth:`head_activation`, so :meth:`embed`
      returns fc7 before it (``feature_dim = fc_dim``, 4096 by default).

    ``width`` multiplies every conv's channel count (rounded, at least 1).

    Any ``input_size`` (16 to 1024 px; left out, 224, or 32 with ``small_input``): the
    layers above are the paper's at every size, and fc6's input width follows the size of
    the last max-pool's output; below 63 px that output would be empty, so such sizes are
    refused (use the small-input layout).

    Small-input layout (``small_input=True``): the three max-pools get padding 1, so they
    halve any side (rounding up), and conv1 becomes a stem whose stride grows with the input
    so that its maps keep about 32 px: stride ``s = input_size // 32`` (at least 1), kernel
    ``(2s+3)x(2s+3)``, padding ``s+1`` (5x5 stride 1 pad 2 up to 63 px; 11x11 stride 4 pad 5
    at 128). The kernel grows with the stride so that it never skips pixels. conv1's maps are
    ``ceil(input_size / s)`` px: 32 at every multiple of 32, up to 63 in between. Everything
    else is unchanged.

    Spatial sizes (conv1, conv2, conv3-conv5 taps; fc6 inputs at ``width`` 1):

    | input | paper layout | small-input layout |
    |---|---|---|
    | 32 | refused | 32, 16, 8; 256x4x4 = 4096 |
    | 64 | 15, 7, 3; 256x1x1 = 256 | conv1 7x7 stride 2: 32, 16, 8; 4096 |
    | 96 | 23, 11, 5; 256x2x2 = 1024 | conv1 9x9 stride 3: 32, 16, 8; 4096 |
    | 128 | 31, 15, 7; 256x3x3 = 2304 | conv1 11x11 stride 4: 32, 16, 8; 4096 |
    | 224 | 55, 27, 13; 256x6x6 = 9216 | conv1 17x17 stride 7: 32, 16, 8; 4096 |

    Init (paper): conv weights N(0, sqrt(2 / (kh*kw*out_channels))), conv bias 0, BatchNorm
    weight 1 and bias 0, linear weights N(0, 0.01) and bias 0; the Sobel filters stay fixed.
    Taps ``conv1`` ... ``conv5`` are the outputs of each conv's ReLU, before pooling.
    """

    Params: ClassVar[type[BackboneParams]] = AlexNetParams
    params: AlexNetParams
    tap_names: ClassVar[tuple[str, ...]] = ("conv1", "conv2", "conv3", "conv4", "conv5")

    def _make_features(self, in_channels: int) -> nn.Sequential:
        c1, c2, c3, c4, c5 = (scaled(c, self.params.width) for c in (96, 256, 384, 384, 256))
        # One (kernel, stride, padding) per conv and pool, the numbers input_size is checked
        # with; the small-input ones keep 32 -> 16 -> 8 -> 4 px maps at multiples of 32.
        conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5 = self.params.windows()
        return nn.Sequential(
            *conv_bn_relu(in_channels, c1, *conv1),
            nn.MaxPool2d(*pool1),
            *conv_bn_relu(c1, c2, *conv2),
            nn.MaxPool2d(*pool2),
            *conv_bn_relu(c2, c3, *conv3),
            *conv_bn_relu(c3, c4, *conv4),
            *conv_bn_relu(c4, c5, *conv5),
            nn.MaxPool2d(*pool5),
        )

    def _make_classifier(self, flat_dim: int, fc_dim: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Dropout(self.params.dropout),
            nn.Linear(flat_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(self.params.dropout),
            nn.Linear(fc_dim, fc_dim),
        )
