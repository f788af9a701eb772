"""Frozen features of chosen layers, pooled to about 9,600 dims, and their extraction.

A conv layer's feature is the output of its ReLU (before any max-pool), average-pooled so
that ``channels x h x w`` is about :data:`TARGET_DIM`, as in the paper's linear probes:

* AlexNet at 224 (width 1): the paper's exact kernels (:data:`PAPER_POOLING`), e.g. conv1
  96x55x55 -> avg-pool kernel 6, stride 6, pad 3 -> 96x10x10 = 9600. Padding counts as
  zeros in the average (PyTorch's default, as in the paper's setup).
* Every other map (other widths, 32x32 input, VGG16, ResNet-50, plugins): adaptive
  average pooling to a side ``s = round(sqrt(TARGET_DIM / channels))``, capped at the
  map's own side (a small map is not upsampled, so its features may stay below the
  target). At AlexNet@224 this rule gives the same sizes as the paper's table
  (10, 6, 5, 5, 6); only the pooling windows differ, hence the table is used there.

``embed`` is the backbone's clustering feature (fc7 before its ReLU for AlexNet/VGG16)
as it is, for kNN and cluster metrics (and probes if wanted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from dcframe.core.errors import UserError
from dcframe.core.interfaces import Backbone
from dcframe.evaluation.data import Split, image_loader
from dcframe.evaluation.options import EMBED
from dcframe.evaluation.runtime import Runtime

#: Dimensions the pooled conv features aim at (the paper's 9,216-9,600).
TARGET_DIM = 9600

#: The paper's average pooling (kernel, stride, padding) for AlexNet at 224, by tap name and
#: (channels, height, width) of the tap.
PAPER_POOLING: dict[tuple[str, tuple[int, int, int]], tuple[int, int, int]] = {
    ("conv1", (96, 55, 55)): (6, 6, 3),
    ("conv2", (256, 27, 27)): (4, 4, 0),
    ("conv3", (384, 13, 13)): (3, 3, 1),
    ("conv4", (384, 13, 13)): (3, 3, 1),
    ("conv5", (256, 13, 13)): (2, 2, 0),
}


def pooled_side(channels: int, side: int) -> int:
    """Side of the pooled map of the general rule: ``round(sqrt(TARGET_DIM / channels))``,
    at least 1 and at most ``side``."""
    return max(1, min(side, round(math.sqrt(TARGET_DIM / channels))))


def pooling_for(name: str, shape: tuple[int, int, int]) -> tuple[nn.Module, str]:
    """The pooling of tap ``name`` whose maps are ``shape`` = (C, H, W), and a description."""
    if (name, shape) in PAPER_POOLING:
        kernel, stride, padding = PAPER_POOLING[name, shape]
        return nn.AvgPool2d(kernel, stride, padding), f"avg k{kernel} s{stride} p{padding}"
    channels, height, width = shape
    side = pooled_side(channels, max(height, width))
    out = (min(side, height), min(side, width))
    if out == (height, width):
        return nn.Identity(), "none"
    return nn.AdaptiveAvgPool2d(out), f"adaptive {out[0]}x{out[1]}"


class FrozenFeatures(nn.Module):
    """Flat features of the chosen layers of a frozen backbone, computed in one pass.

    The backbone stays in eval mode (BatchNorm running statistics, no dropout) whatever
    mode this module is put in; gradients are never needed.

    Args:
        backbone: The trunk, frozen and in eval mode.
        layers: Tap names of the backbone and/or ``embed``, in the order results are wanted.

    Attributes:
        layers: The layer names, in order.
        dims: Feature width of every layer.
        pooling: How every layer is pooled, described ("avg k6 s6 p3", "none", ...).

    Raises:
        UserError: an unknown or repeated layer name (valid ones are listed).
    """

    def __init__(self, backbone: Backbone, layers: Sequence[str]) -> None:
        super().__init__()
        valid = (*backbone.tap_names, EMBED)
        unknown = [name for name in layers if name not in valid]
        if unknown or not layers or len(set(layers)) != len(layers):
            raise UserError(
                f"--layers: {','.join(layers) or 'nothing'} is not a list of distinct layers of "
                f"this {type(backbone).__name__}; valid layers: {', '.join(valid)}"
            )
        self.backbone = backbone
        self.layers = tuple(layers)
        self._taps = [name for name in layers if name != EMBED]
        self.pools = nn.ModuleDict()
        self.pooling: dict[str, str] = {}
        self.dims: dict[str, int] = {}
        for name, shape in self._tap_shapes().items():
            self.pools[name], self.pooling[name] = pooling_for(name, shape)
            self.dims[name] = self.pools[name](torch.zeros(1, *shape)).numel()
        if EMBED in layers:
            self.pooling[EMBED] = "none"
            self.dims[EMBED] = backbone.feature_dim

    @torch.no_grad()
    def _tap_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of every chosen tap, from a forward pass of one blank image."""
        if not self._taps:
            return {}
        device = next(self.backbone.parameters()).device
        size = self.backbone.input_size
        maps = self.backbone.taps(torch.zeros(1, 3, size, size, device=device), self._taps)
        return {name: (m.shape[1], m.shape[2], m.shape[3]) for name, m in maps.items()}

    def train(self, mode: bool = True) -> FrozenFeatures:
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer name -> (B, dims[name]) features of a batch of normalised images."""
        out: dict[str, torch.Tensor] = {}
        if self._taps:
            maps = self.backbone.taps(images, self._taps)
            for name in self._taps:  # pop: each full-size map is freed once it is pooled
                out[name] = torch.flatten(self.pools[name](maps.pop(name)), 1)
        if EMBED in self.layers:
            out[EMBED] = self.backbone.embed(images)
        return {name: out[name] for name in self.layers}


@torch.no_grad()
def feature_batches(
    features: FrozenFeatures,
    split: Split,
    transform: Callable[[Any], torch.Tensor],
    runtime: Runtime,
    description: str,
    crops: int = 1,
) -> Iterator[dict[str, torch.Tensor]]:
    """Features of successive batches of ``split``, in image order, as float32 CPU tensors.

    Yields (B, dim) per layer, or (B, crops, dim) when ``transform`` returns a stack of
    ``crops`` crops per image (e.g. ten-crop). With crops, a batch holds
    ``batch_size // crops`` images (at least one), so that the trunk never sees more than
    about ``batch_size`` crops at once: the unpooled maps of one pass stay one batch's worth.
    """
    images_per_batch = max(1, runtime.batch_size // crops)
    loader = image_loader(split, transform, images_per_batch, runtime.workers)
    for images, _ in runtime.reporter.track(loader, len(loader), description):
        batch = len(images)
        if images.dim() == 5 and images.shape[1] != crops:
            raise ValueError(f"the view gives {images.shape[1]} crops per image, not {crops}")
        stacked = images.dim() == 5
        flat = features((images.flatten(0, 1) if stacked else images).to(runtime.device))
        row = images.shape[1:2] if stacked else torch.Size()
        yield {name: values.float().cpu().view(batch, *row, -1) for name, values in flat.items()}
