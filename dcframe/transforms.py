"""The two image pipelines of DeepCluster, sized by the backbone's input size.

Sizes follow the paper at 224 (resize 256, crop 224) and scale proportionally for other
input sizes (32 -> resize 37, crop 32).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tv() -> ModuleType:
    # torchvision takes seconds to import; commands that fail early should not pay for it.
    from torchvision import transforms

    return transforms


def _normalise() -> list[object]:
    T = _tv()
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def resize_size(input_size: int) -> int:
    """Shorter side before the centre crop: 256 for 224, scaled alike for other sizes."""
    return round(input_size * 256 / 224)


def smallest_side_used(input_size: int, crop_scale_min: float) -> int:
    """The fewest pixels on an image's shorter side that lose nothing either view uses: the
    clustering view's resize, and the training view's smallest crop still covering the input
    size (a crop of area fraction ``crop_scale_min`` spans its square root of each side)."""
    return max(resize_size(input_size), math.ceil(input_size / math.sqrt(crop_scale_min)))


def clustering_transform(input_size: int) -> Any:
    """Deterministic view used for feature extraction: resize, centre crop, normalise."""
    T = _tv()
    return T.Compose([T.Resize(resize_size(input_size)), T.CenterCrop(input_size), *_normalise()])


def training_transform(
    input_size: int, crop_scale_min: float = 0.08, horizontal_flip: bool = True
) -> Any:
    """Augmented view used for training: random resized crop, optional flip, normalise."""
    T = _tv()
    steps: list[object] = [T.RandomResizedCrop(input_size, scale=(crop_scale_min, 1.0))]
    if horizontal_flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, *_normalise()])


def clustering_view(input_size: int) -> Any:
    """The deterministic part of :func:`clustering_transform`: resize and centre crop (PIL)."""
    T = _tv()
    return T.Compose([T.Resize(resize_size(input_size)), T.CenterCrop(input_size)])


class PixelsOfClusteringView:
    """An image's clustering view as a uint8 (height, width, 3) tensor, the form in which it is
    cached; :func:`normalise_pixels` turns a batch of them into the network's input."""

    def __init__(self, input_size: int) -> None:
        self.view = clustering_view(input_size)

    def __call__(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(np.array(self.view(image), dtype=np.uint8))


def normalise_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """A (B, H, W, 3) uint8 batch as the normalised (B, 3, H, W) float input, computed with the
    same operations, in the same order, as ToTensor then Normalize on each image (so the
    result is bit-identical to :func:`clustering_transform`)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return pixels.permute(0, 3, 1, 2).contiguous().float().div(255).sub_(mean).div_(std)
