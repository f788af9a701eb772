"""The frozen Sobel input layer of the DeepCluster paper."""

from __future__ import annotations

import torch
from torch import nn

#: Horizontal gradient kernel (responds to vertical edges), as printed in the paper.
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
#: Vertical gradient kernel (responds to horizontal edges).
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


class Sobel(nn.Sequential):
    """Fixed Sobel gradients of the grayscale image: (B, 3, H, W) -> (B, 2, H, W).

    Two frozen convolutions in an ``nn.Sequential`` (an ``nn.Module``):

    * ``0``: 1x1 conv 3 -> 1, every weight 1/3, bias 0: the plain mean of the normalised
      RGB channels (not a luminance weighting).
    * ``1``: 3x3 conv 1 -> 2, padding 1, output 0 = ``SOBEL_X`` (Gx), output 1 =
      ``SOBEL_Y`` (Gy), bias 0.

    The paper's gradient conv has no bias; this one carries a bias fixed at 0 so that the
    state-dict keys (``0.weight``, ``0.bias``, ``1.weight``, ``1.bias``) match the officially
    released checkpoints and those load by key. Nothing here requires grad, so the
    filters never reach an optimizer.
    """

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 1, kernel_size=1), nn.Conv2d(1, 2, kernel_size=3, padding=1))
        self.load_state_dict(
            {
                "0.weight": torch.full((1, 3, 1, 1), 1.0 / 3.0),
                "0.bias": torch.zeros(1),
                "1.weight": torch.tensor([SOBEL_X, SOBEL_Y]).unsqueeze(1),
                "1.bias": torch.zeros(2),
            }
        )
        self.requires_grad_(False)
