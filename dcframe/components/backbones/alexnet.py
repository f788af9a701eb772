"""AlexNet with BatchNorm, the DeepCluster paper's main backbone."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from dcframe.components.backbones._common import (
    ConvFcBackbone,
    conv_bn_relu,
    scaled,
)
from dcframe.components.params import AlexNetParams
from dcframe.interfaces import BackboneParams


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

    Small-input variant (``small_input=True``, 32x32 input): conv1 becomes 5x5 stride 1 pad 2
    and each of the three 3x3 stride-2 max-pools gets padding 1; everything else is unchanged.
    Spatial sizes: 32 -> 32 -> 16 -> 16 -> 8 -> 8 -> 8 -> 8 -> 4, so fc6 sees 256*4*4 = 4096
    inputs at width 1, and the taps are conv1 96x32x32, conv2 256x16x16, conv3-conv5 x8x8.

    Init (paper): conv weights N(0, sqrt(2 / (kh*kw*out_channels))), conv bias 0, BatchNorm
    weight 1 and bias 0, linear weights N(0, 0.01) and bias 0; the Sobel filters stay fixed.
    Taps ``conv1`` ... ``conv5`` are the outputs of each conv's ReLU, before pooling.
    """

    Params: ClassVar[type[BackboneParams]] = AlexNetParams
    tap_names: ClassVar[tuple[str, ...]] = ("conv1", "conv2", "conv3", "conv4", "conv5")

    def _make_features(self, in_channels: int) -> nn.Sequential:
        small = self.params.small_input
        c1, c2, c3, c4, c5 = (scaled(c, self.params.width) for c in (96, 256, 384, 384, 256))
        conv1_kernel, conv1_stride = (5, 1) if small else (11, 4)
        # Padded pools halve 32 -> 16 -> 8 -> 4 exactly; unpadded ones give the paper's 6x6.
        pool_padding = 1 if small else 0
        return nn.Sequential(
            *conv_bn_relu(in_channels, c1, conv1_kernel, conv1_stride, padding=2),
            nn.MaxPool2d(3, stride=2, padding=pool_padding),
            *conv_bn_relu(c1, c2, 5, padding=2),
            nn.MaxPool2d(3, stride=2, padding=pool_padding),
            *conv_bn_relu(c2, c3, 3, padding=1),
            *conv_bn_relu(c3, c4, 3, padding=1),
            *conv_bn_relu(c4, c5, 3, padding=1),
            nn.MaxPool2d(3, stride=2, padding=pool_padding),
        )

    def _make_classifier(self, flat_dim: int, fc_dim: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Dropout(self.params.dropout),
            nn.Linear(flat_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(self.params.dropout),
            nn.Linear(fc_dim, fc_dim),
        )
